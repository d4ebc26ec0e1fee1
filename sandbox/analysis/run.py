"""A trained run, opened once for analysis: config, params, tokenizer, data and its eval set.

    run = analysis.load("runs/tiny-20260101-120000")
    run.val_loss()                      # the number training logged last, on the same eval set
    run.eval_set.name                   # "val/seed0/8x32x64": what every "val loss" was measured on
"""

import dataclasses
from pathlib import Path

from sandbox.nn import transformer
from sandbox.text.data import Dataset, EvalSet, load_dataset
from sandbox.text.tokenizer import run_tokenizer
from sandbox.train import checkpoint, objective


@dataclasses.dataclass
class Run:
    cfg: object  # the resolved `sandbox.train.config.Config`
    params: dict
    step: int
    data: Dataset  # tokenizer, train and val token streams
    eval_set: EvalSet  # the run's own evaluation set (the one training's val loss used)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "run"

    @property
    def tokenizer(self):
        return self.data.tokenizer

    def logits(self, params, batch):
        """logits_BxLxV of the run's transformer on batch["inputs"]."""
        return transformer.apply(params, batch["inputs"], self.cfg.model)

    def loss(self, params, batch):
        """The objective every analysis asks about: mean next-token cross-entropy (`objective.lm_loss`)."""
        return objective.lm_loss(params, batch, self.cfg.model)

    def groups(self) -> dict:
        return transformer.param_groups(self.params)

    def eval_subset(self, num_batches: int | None = None, batch_size: int | None = None) -> EvalSet:
        """The run's eval set, or a prefix of it (a named subset); sizes beyond it draw a new named set."""
        if (num_batches or 1) <= self.eval_set.num_batches and (batch_size or 1) <= self.eval_set.batch_size:
            return self.eval_set.take(num_batches, batch_size)
        return objective.eval_set(self.cfg, self.data.val_N, num_batches, batch_size)

    def val_loss(self, params=None, evals: EvalSet | None = None) -> float:
        """Mean loss over `evals` (default: the run's eval set) at `params` (default: the run's)."""
        return objective.eval_loss(self.params if params is None else params, evals or self.eval_set, self.cfg.model)


def load(run_dir: str | Path, step: int | None = None, seed_index: int = 0) -> Run:
    """Open a run folder: its checkpoint at `step` (default: the latest), its tokenizer and the eval set
    of seed `seed_index` (the one training measured that seed's val loss on)."""
    cfg, params, step = checkpoint.load_run(run_dir, step, seed_index)
    data = load_dataset(cfg.data, cfg.model.seq_len, run_tokenizer(cfg.data, run_dir))
    return Run(cfg, params, step, data, objective.eval_set(cfg, data.val_N, seed_index=seed_index), Path(run_dir))


def from_training(cfg, params, data: Dataset, step: int, path: Path | None = None) -> Run:
    """A Run from objects already in memory (a notebook, an experiment): no file is read."""
    return Run(cfg, params, step, data, objective.eval_set(cfg, data.val_N), path)
