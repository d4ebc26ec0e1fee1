"""A run folder, opened once: config, params, and — read only when first asked for — tokenizer, data, eval set.

    run = analysis.load("runs/tiny-20260101-120000")
    run.val_loss()                      # the number training logged last, on the same eval set
    run.eval_set.name                   # "val/seed0/8x32x64": what every "val loss" was measured on
    run.analysis_set().name             # "val/seed0/8x32x64[:1,:8]": every curvature number's default batch

`load` is the one way a command, an experiment or a notebook opens a run (a pretrained model's
folder included): opening reads the config and the verified checkpoint; the tokenizer, the corpus and
the eval set are read the first time something uses them, so `sample` or `spectra` never tokenize a corpus.
"""

import functools
from pathlib import Path

from sandbox.nn import transformer
from sandbox.text.data import Dataset, EvalSet, load_dataset
from sandbox.text.tokenizer import run_tokenizer
from sandbox.train import checkpoint, objective

ANALYSIS_BATCH_SIZE = 8  # sequences of the eval set's first batch that curvature commands use by default


class Run:
    """A trained (or pretrained) model with its config, its tokenizer and its named eval set."""

    def __init__(self, cfg, params, step: int, path: Path | None = None, seed_index: int = 0,
                 data: Dataset | None = None):
        self.cfg = cfg  # the resolved `sandbox.train.config.Config`
        self.params = params
        self.step = step
        self.path = path
        self.seed_index = seed_index
        if data is not None:  # already in memory (a notebook, an experiment): nothing is read
            self.__dict__["data"] = data

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "run"

    @functools.cached_property
    def tokenizer(self):
        """The tokenizer the run was trained with (read from the folder; the data's, if already loaded)."""
        if "data" in self.__dict__:
            return self.data.tokenizer
        return run_tokenizer(self.cfg.data, self.path)

    @functools.cached_property
    def data(self) -> Dataset:
        """The run's corpus split and tokenized as training saw it (read on first use)."""
        return load_dataset(self.cfg.data, self.cfg.model.seq_len, self.tokenizer)

    @functools.cached_property
    def eval_set(self) -> EvalSet:
        """The run's own evaluation set: the one training's val loss used for this seed."""
        return objective.eval_set(self.cfg, self.data.val_N, seed_index=self.seed_index)

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
        return objective.eval_set(self.cfg, self.data.val_N, num_batches, batch_size, self.seed_index)

    def analysis_set(self, batch_size: int | None = None) -> EvalSet:
        """The default batch of every curvature number (hessian, numerics curvature, the quickstart's
        spectrum): the first `batch_size` (default `ANALYSIS_BATCH_SIZE`) sequences of the eval set's
        first batch, so two commands asked about one checkpoint answer about the same function."""
        return self.eval_subset(1, batch_size or min(ANALYSIS_BATCH_SIZE, self.cfg.train.batch_size))

    def val_loss(self, params=None, evals: EvalSet | None = None) -> float:
        """Mean loss over `evals` (default: the run's eval set) at `params` (default: the run's)."""
        return objective.eval_loss(self.params if params is None else params, evals or self.eval_set, self.cfg.model)


def load(run_dir: str | Path, step: int | None = None, seed_index: int = 0) -> Run:
    """Open a run folder: its verified checkpoint at `step` (default: the latest) for seed `seed_index`
    of a multi-seed run; tokenizer, data and that seed's eval set are read when first used."""
    cfg, params, step = checkpoint.load_run(run_dir, step, seed_index)
    return Run(cfg, params, step, Path(run_dir), seed_index)


def from_training(cfg, params, data: Dataset, step: int, path: Path | None = None) -> Run:
    """A Run from objects already in memory (a notebook, an experiment): no file is read."""
    return Run(cfg, params, step, path, data=data)
