"""Optimizers side by side on the tiny LM: loss curves over seeds, final loss, speed, sharpness.

Each entry names an optimizer preset (configs/optimizer/<preset>.yaml) and its learning rate;
every optimizer trains `seeds` independently initialised models at once (vmap; the first is `seed`), on the
same data orders, and every val loss is measured on the same eval set, so the spread is over seeds and
the comparison is fair. The final top Hessian eigenvalue (Lanczos) of each optimizer's first-seed
model, on the first batch of that eval set, tells how sharp a minimum it found.

A comparison, not a paper's claim; what it predicts is that its ranking is not seed noise: the optimizer with
the lowest mean final val loss is the best at every seed (each seed's own final val loss, on its own eval
set). A seed where another optimizer wins fails; with one optimizer the rule holds trivially.
"""

from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from sandbox.experiments import protocol

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
    seeds: int = 3  # independent seeds, trained at once (vmapped)
    seed: int = 0  # the first seed
    sharpness: bool = True  # final top Hessian eigenvalue per optimizer

    def __post_init__(self):
        if not self.optimizers:
            raise SandboxError("optimizers must list at least one {preset, learning_rate}")
        validate.positive_int("", "seeds", self.seeds)
        protocol.check_seeds(self.seed, self.seeds)


def _train_config(cfg: Config, entry: Entry):
    return config_lib.load(cfg.base, [*cfg.overrides, f"optimizer={entry.preset}",
                                      f"optimizer.learning_rate={entry.learning_rate}",
                                      f"train.num_seeds={cfg.seeds}", f"train.seed={cfg.seed}",
                                      "train.checkpoint_every=1000000"])


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
        say(f"[{i}/{len(train_cfgs)}] {label}: training {cfg.seeds} seeds at once")
        run_dir = out_dir / "runs" / f"{entry.preset}-{entry.learning_rate:g}"
        summary = session.start(train_cfg, run_dir, progress=progress)
        curves[label] = [r for r in records.read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r]
        row = {"optimizer": entry.preset, "learning_rate": entry.learning_rate,
               "final_val_loss": summary["final_val_loss"],
               "final_val_loss_std": summary.get("final_val_loss_std", 0.0),
               "eval_set": summary["eval_set"], "tokens_per_second": summary["tokens_per_second"],
               "run_dir": str(run_dir),
               "per_seed_val_loss": [analysis.load(run_dir, seed_index=j).val_loss() for j in range(cfg.seeds)]}
        if cfg.sharpness:
            row["top_hessian_eigenvalue"], row["hessian_eval_set"] = _top_eigenvalue(run_dir)
        table.append(row)
    eval_sets = sorted({r["eval_set"] for r in table})
    _plot(curves, out_dir / "figures" / "val_loss.png", ", ".join(eval_sets))
    best = min(table, key=lambda r: r["final_val_loss"])
    lines = format_table(table)
    best_label, results = f"{best['optimizer']} (lr {best['learning_rate']:g})", []
    for j, seed in enumerate(protocol.seed_list(cfg)):
        losses = {f"{r['optimizer']} (lr {r['learning_rate']:g})": r["per_seed_val_loss"][j] for r in table}
        winner = min(losses, key=losses.get)
        results.append(protocol.SeedResult(seed, {f"val loss {k}": v for k, v in losses.items()},
                                           winner == best_label, {"best_at_this_seed": winner}))
    expected = protocol.Expected(
        prediction="the optimizers' ranking is not seed noise: the best on average is the best at every seed",
        source="a comparison on this config (no paper's claim)",
        rule=(f"per seed: the optimizer with the lowest mean final val loss ({best_label}) has the lowest final "
              "val loss of that seed (its own eval set)"),
        reason="a ranking that changes from seed to seed is within the seeds' spread and says nothing")
    extra = {"table": table, "table_text": lines, "best": best["optimizer"],
             "eval_set": eval_sets[0] if len(eval_sets) == 1 else eval_sets}
    summary = protocol.write(out_dir, "optimizer_comparison", cfg, expected, results, ["figures/val_loss.png"], extra)
    say("\n".join([f"val loss on eval set {summary['eval_set']}, mean and std over {cfg.seeds} seeds; "
                   "top Hessian eigenvalue of the first seed on the set's first batch:", *lines,
                   f"best: {best['optimizer']}"]))
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
