"""Simulate 8 CPU devices for the whole suite (must be set before jax is imported)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

# Many tests compile the same train step; share compiled programs across them.
jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


import pytest  # noqa: E402

# The smallest trained run the analysis tests share: a 1-layer LM on a 4-symbol Markov source,
# 4 steps, checkpoint and eval at the end. Trained once per test session.
TINY_RUN_OVERRIDES = [
    "data.corpus=markov", "data.markov.alphabet=4", "data.markov.order=2", "data.markov.length=20000",
    "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.seq_len=32",
    "train.batch_size=8", "train.eval_batches=2", "train.steps=4", "train.eval_every=4",
    "train.checkpoint_every=4", "train.log_every=4",
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(run_dir, training summary) of the shared tiny run; tests must not write into run_dir's files."""
    from sandbox.train import config, session

    path = tmp_path_factory.mktemp("tiny_run") / "micro"
    summary = session.start(config.load("configs/tiny.yaml", TINY_RUN_OVERRIDES), path, progress=False)
    return path, summary
