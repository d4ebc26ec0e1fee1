"""Shared cases (curvlinops' `cases.py` pattern): the small configs many test files train or analyse."""

from sandbox.train import config

# A 1-layer LM on a 4-symbol order-2 Markov source: trains in seconds, with a known entropy rate.
MICRO = ["data.corpus=markov", "data.markov.alphabet=4", "data.markov.order=2", "data.markov.concentration=0.1",
         "data.markov.length=50000", "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64",
         "model.seq_len=32", "train.batch_size=16", "train.log_every=10"]


def micro(*overrides):
    """The MICRO run's config, with `overrides` (dotted KEY=VALUE) on top."""
    return config.load("configs/tiny.yaml", MICRO + list(overrides))
