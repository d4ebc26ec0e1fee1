"""Simulate 8 CPU devices for the whole suite (must be set before jax is imported); one compilation cache."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")

# Many tests compile the same programs, and so do the `sandbox` commands tests run in subprocesses (they
# inherit the variable): all share the checkout's .jax_cache, set the way every command sets its own.
os.environ.setdefault("SANDBOX_COMPILE_CACHE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                            ".jax_cache"))

from sandbox import compile_cache  # noqa: E402

compile_cache.enable()


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
