"""Optimizers side by side on the tiny LM: loss curves over seeds, final loss, speed, sharpness.

Each entry names an optimizer preset (configs/optimizer/<preset>.yaml) and its learning rate;
every optimizer trains `num_seeds` independently initialised models at once (vmap), on the same
data orders, so the spread is over seeds and the comparison is fair. The final top Hessian
eigenvalue (Lanczos) of each optimizer's seed-0 model tells how sharp a minimum it found.
"""

from dataclasses import dataclass, field
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sandbox import config as config_lib  # noqa: E402
from sandbox import curvature  # noqa: E402
from sandbox.errors import SandboxError  # noqa: E402
from sandbox.train import checkpoint, objective, records, session  # noqa: E402


@dataclass
class Entry:
    preset: str = "adamw"
    learning_rate: float = 3e-3


@dataclass
class Config:
    base: str = "configs/tiny.yaml"  # the training config every optimizer shares
    overrides: list[str] = field(default_factory=lambda: ["train.steps=300", "train.eval_every=50"])
    optimizers: list[Entry] = field(default_factory=lambda: [Entry()])
    num_seeds: int = 3
    sharpness: bool = True  # final top Hessian eigenvalue per optimizer

    def __post_init__(self):
        if not self.optimizers:
            raise SandboxError("optimizers must list at least one {preset, learning_rate}")
        if self.num_seeds <= 0:
            raise SandboxError(f"num_seeds must be positive, got {self.num_seeds}")


def _train_config(cfg: Config, entry: Entry):
    return config_lib.load(cfg.base, [*cfg.overrides, f"optimizer={entry.preset}",
                                      f"optimizer.learning_rate={entry.learning_rate}",
                                      f"train.num_seeds={cfg.num_seeds}", "train.checkpoint_every=1000000"])


def _top_eigenvalue(run_dir: Path) -> float:
    train_cfg, params, _ = checkpoint.load_run(run_dir)
    batch = objective.eval_batch(train_cfg, jax.random.PRNGKey(0), train_cfg.train.batch_size, run_dir)
    loss_fn = lambda p, b: objective.lm_loss(p, b, train_cfg.model)  # noqa: E731
    return float(curvature.sharpness(loss_fn, params, batch, jax.random.PRNGKey(1)))


def run(cfg: Config, out_dir: Path, progress: bool = True) -> dict:
    train_cfgs = [_train_config(cfg, e) for e in cfg.optimizers]  # bad presets fail before training
    table, curves = [], {}
    for entry, train_cfg in zip(cfg.optimizers, train_cfgs):
        label = f"{entry.preset} (lr {entry.learning_rate:g})"
        run_dir = out_dir / "runs" / f"{entry.preset}-{entry.learning_rate:g}"
        summary = session.start(train_cfg, run_dir, progress=progress)
        curves[label] = [r for r in records.read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r]
        row = {"optimizer": entry.preset, "learning_rate": entry.learning_rate,
               "final_val_loss": summary["final_val_loss"], "final_val_loss_std": summary.get("final_val_loss_std", 0.0),
               "tokens_per_second": summary["tokens_per_second"], "run_dir": str(run_dir)}
        if cfg.sharpness:
            row["top_hessian_eigenvalue"] = _top_eigenvalue(run_dir)
        table.append(row)
    _plot(curves, out_dir / "figures" / "val_loss.png")
    best = min(table, key=lambda r: r["final_val_loss"])
    summary = {"table": table, "best": best["optimizer"], "num_seeds": cfg.num_seeds}
    records.write_json(out_dir / "summary.json", summary)
    return summary


def _plot(curves: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, rows in curves.items():
        steps = np.array([r["step"] for r in rows])
        mean = np.array([r["val_loss"] for r in rows])
        std = np.array([r.get("val_loss_std", 0.0) for r in rows])
        ax.plot(steps, mean, marker="o", ms=3, label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("step")
    ax.set_ylabel("val cross-entropy (nats/token), mean ± std over seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
