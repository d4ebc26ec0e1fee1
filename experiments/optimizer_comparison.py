"""Optimizers side by side on the tiny LM: loss curves over seeds, final loss, speed, sharpness.

Each entry names an optimizer preset (configs/optimizer/<preset>.yaml) and its learning rate;
every optimizer trains `num_seeds` independently initialised models at once (vmap), on the same
data orders, and every val loss is measured on the same eval set, so the spread is over seeds and
the comparison is fair. The final top Hessian eigenvalue (Lanczos) of each optimizer's seed-0
model, on the first batch of that eval set, tells how sharp a minimum it found.
"""

from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from sandbox import analysis, curvature, plotting, validate
from sandbox.errors import SandboxError
from sandbox.train import config as config_lib
from sandbox.train import records, session

COLUMNS = (("optimizer", "{}"), ("learning_rate", "{:g}"), ("final_val_loss", "{:.4f}"),
           ("final_val_loss_std", "{:.4f}"), ("tokens_per_second", "{:.0f}"), ("top_hessian_eigenvalue", "{:.4g}"))


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
        validate.positive_int("", "num_seeds", self.num_seeds)


def _train_config(cfg: Config, entry: Entry):
    return config_lib.load(cfg.base, [*cfg.overrides, f"optimizer={entry.preset}",
                                      f"optimizer.learning_rate={entry.learning_rate}",
                                      f"train.num_seeds={cfg.num_seeds}", "train.checkpoint_every=1000000"])


def _top_eigenvalue(run_dir: Path) -> tuple[float, str]:
    """(lambda_max of the seed-0 model's Hessian, the eval batch it was measured on)."""
    run = analysis.load(run_dir)
    evals = run.eval_subset(1)
    return float(curvature.sharpness(run.loss, run.params, evals.batch(0), jax.random.PRNGKey(1))), evals.name


def run(cfg: Config, out_dir: Path, progress: bool = True) -> dict:
    train_cfgs = [_train_config(cfg, e) for e in cfg.optimizers]  # bad presets fail before training
    say = print if progress else (lambda *a: None)
    table, curves = [], {}
    for i, (entry, train_cfg) in enumerate(zip(cfg.optimizers, train_cfgs), 1):
        label = f"{entry.preset} (lr {entry.learning_rate:g})"
        say(f"[{i}/{len(train_cfgs)}] {label}: training {cfg.num_seeds} seeds at once")
        run_dir = out_dir / "runs" / f"{entry.preset}-{entry.learning_rate:g}"
        summary = session.start(train_cfg, run_dir, progress=progress)
        curves[label] = [r for r in records.read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r]
        row = {"optimizer": entry.preset, "learning_rate": entry.learning_rate,
               "final_val_loss": summary["final_val_loss"],
               "final_val_loss_std": summary.get("final_val_loss_std", 0.0),
               "eval_set": summary["eval_set"], "tokens_per_second": summary["tokens_per_second"],
               "run_dir": str(run_dir)}
        if cfg.sharpness:
            row["top_hessian_eigenvalue"], row["hessian_eval_set"] = _top_eigenvalue(run_dir)
        table.append(row)
    eval_sets = sorted({r["eval_set"] for r in table})
    _plot(curves, out_dir / "figures" / "val_loss.png", ", ".join(eval_sets))
    best = min(table, key=lambda r: r["final_val_loss"])
    lines = format_table(table)
    summary = {"table": table, "table_text": lines, "best": best["optimizer"], "num_seeds": cfg.num_seeds,
               "eval_set": eval_sets[0] if len(eval_sets) == 1 else eval_sets}
    records.write_json(out_dir / "summary.json", summary)
    say("\n".join([f"val loss on eval set {summary['eval_set']}, mean and std over {cfg.num_seeds} seeds; "
                   "top Hessian eigenvalue of seed 0 on the set's first batch:", *lines, f"best: {best['optimizer']}"]))
    return summary


def format_table(table: list[dict]) -> list[str]:
    """The results as aligned text lines: a header, then one line per optimizer."""
    cols = [(name, fmt) for name, fmt in COLUMNS if any(name in r for r in table)]
    cells = [[name for name, _ in cols]] + [[fmt.format(r[name]) for name, fmt in cols] for r in table]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    return ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]


def _plot(curves: dict, path: Path, eval_set: str) -> None:
    fig, ax = plotting.figure(6.5, 4)
    for label, rows in curves.items():
        steps = np.array([r["step"] for r in rows])
        mean = np.array([r["val_loss"] for r in rows])
        std = np.array([r.get("val_loss_std", 0.0) for r in rows])
        ax.plot(steps, mean, marker="o", ms=3, label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("training step")
    ax.set_ylabel("val cross-entropy (nats/token), mean ± std over seeds")
    ax.set_title(f"validation loss per optimizer (eval set {eval_set})", fontsize=9)
    ax.legend(fontsize=8, title="optimizer (band: ± 1 std over seeds)", title_fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    plotting.save(fig, path)
