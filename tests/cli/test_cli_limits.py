"""Limits before work and arguments checked before any folder is made: each bad request is refused in
one line (exit 2) with the estimate or the range in the message, and nothing is written.

Commands run in-process through `sandbox.cli.main`; the run is the session's tiny run (conftest).
"""

import functools
import os

import pytest

from sandbox.cli import main
from sandbox.text import bpe


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(capsys, argv) -> str:
    """The one line of a refusal (exit 2)."""
    with _NoExit() as box:
        box.rc = main(list(map(str, argv)))
    err = capsys.readouterr().err
    assert box.rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, (box.rc, err)
    return err


class _NoExit:
    """Runs a command, turning argparse's SystemExit into its code."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is SystemExit:
            self.rc = value.code
            return True
        return False


@pytest.mark.parametrize(("argv", "words"), [
    (["bayes", "{run}", "--val-windows", "900000", "--out", "o"], "windows of 32 tokens the val split holds"),
    (["bayes", "{run}", "--val-windows", "100000000", "--out", "o"], "--val-windows: must be an integer in [2,"),
    (["bayes", "{run}", "--fit-windows", "0", "--out", "o"], "--fit-windows: must be an integer in [2,"),
    (["bayes", "{run}", "--num-bins", "0", "--out", "o"], "--num-bins: must be an integer in [1,"),
    (["bayes", "{run}", "--seed", str(2**63), "--out", "o"], "--seed: must be an integer in [0, 9,223,372,036"),
    (["hessian", "{run}", "--batch-size", "1000000", "--out", "o"], "--batch-size 1,000,000 needs about"),
    (["hessian", "{run}", "--top-k", "10", "--num-steps", "5", "--out", "o"],
     "--top-k 10 exceeds --num-steps 5"),
    (["hessian", "{run}", "--seed", str(2**64), "--out", "o"], "--seed: must be an integer in [0,"),
    (["sample", "{run}", "--prompt", "a", "--num-tokens", "100000000"],
     "--num-tokens: must be an integer in [1, 100,000]"),
    (["sample", "{run}", "--prompt", "a", "--seed", str(2**63)], "--seed: must be an integer"),
    (["sample", "{run}", "--prompt", "a", "-n", "0"], "-n: must be an integer in [1, 10,000]"),
    (["sample", "{run}", "--prompt", "a", "--canonical-only"], "--canonical-only goes with --regex"),
    (["sample", "{run}", "--prompt", "a\udcff"], "--prompt: is not valid UTF-8 text"),
    (["sample", "{run}", "--prompt", "a", "--regex", "(a|b)*a(a|b){16}", "--num-tokens", "20"],
     "needs more than 10,000 states"),
    (["launch", "--local", "100000", "--", "train", "configs/tiny.yaml"], "--local: must be an integer in [1, 4,096]"),
    (["launch", "--local", "4096", "--", "train", "configs/tiny.yaml"], "cores; use at most"),
    (["launch", "--local", "1", "--port", "70000", "--", "train", "configs/tiny.yaml"],
     "--port: must be an integer in [1, 65,535]"),
    (["tokenize", "encode", "/dev/zero", "x"], "/dev/zero is a device, pipe or socket"),
    (["train", "configs/tiny.yaml", "train.seed=9223372036854775808", "--out", "o"],
     "train.seed must be an integer in [0, 2^63 - 1]"),
    (["train", "configs/tiny.yaml", "model.vocab_size=10", "--out", "o"],
     "model.vocab_size=10 differs from the tokenizer's 256"),
    (["train", "configs/tiny.yaml", "model.n_layers=100000", "--out", "o"], "one training step needs about"),
    (["train", "configs/tiny.yaml", "optimizer.args.b1=2", "--out", "o"], "optimizer.args.b1=2 must lie in [0, 1)"),
    (["train", "configs/tiny.yaml", "optimizer=adam", "optimizer.args.b2=1.0", "--out", "o"],
     "b2=1.0 must lie in [0, 1)"),
    (["train", "configs/tiny.yaml", "--resume", "{run}"], "continues the run with its own config.yaml"),
    (["train", "--resume", "{run}", "--out", "o"], "--out goes with a new run"),
])
def test_bad_requests_are_refused_in_one_line_before_any_folder(tiny_run, here, capsys, argv, words):
    run = tiny_run[0]
    before = sorted(os.listdir(run))
    err = refused(capsys, [a.replace("{run}", str(run)) for a in argv])
    assert words in err
    assert os.listdir(here) == [] and sorted(os.listdir(run)) == before


def test_pipes_are_refused_as_files_and_yaml_errors_are_one_line(here, capsys):
    os.mkfifo(here / "pipe")
    assert "pipe is a device, pipe or socket" in refused(capsys, ["tokenize", "encode", here / "pipe", "x"])
    assert "is a folder, device or pipe, not a file" in refused(capsys, ["train", here / "pipe"])
    (here / "bad.yaml").write_text("model:\n  d_model: [1,\n  n_layers: 2\n")
    assert "is not valid YAML" in refused(capsys, ["train", here / "bad.yaml"])
    assert sorted(os.listdir(here)) == ["bad.yaml", "pipe"]


def test_huge_segmentation_counts_print_exactly_and_surrogates_are_refused(here, capsys):
    tok = bpe.train("ab ab abab " * 50, 260, pattern="gpt4")
    tok.save(here / "tok.json")
    text = "ab " * 20000  # its count has over 9,000 digits: beyond Python's 4,300-digit limit on int-to-str
    assert main(["tokenize", "count", str(here / "tok.json"), text]) == 0
    out = capsys.readouterr().out
    digits = out.split(" ", 1)[0]
    assert digits.isdigit() and f"({len(digits):,} digits)" in out and len(digits) > 4300
    for action in ("count", "encode", "explain"):
        assert "is not valid UTF-8 text" in refused(capsys, ["tokenize", action, here / "tok.json", "ab\udcff"])


def test_out_of_memory_names_the_arguments_of_the_command():
    import jax.numpy as jnp

    from sandbox.cli import out_of_memory

    with pytest.raises(Exception) as caught:
        jnp.zeros((2**45,), jnp.float32).block_until_ready()  # 128 TiB: XLA refuses the allocation
    assert "lower --batch-size, --num-steps or --num-probes" in out_of_memory(caught.value, "hessian")
    assert "lower --fit-windows or --val-windows" in out_of_memory(caught.value, "bayes")


def test_memory_estimate_of_a_deep_model_equals_the_traced_one():
    import jax

    from sandbox import optim
    from sandbox.nn import transformer
    from sandbox.train import config, memory

    def traced(optimizer, m, key):
        return optimizer.init(transformer.init(key, m))

    for name in ("adamw", "muon"):
        cfg = config.load("configs/tiny.yaml", ["model.n_layers=5", f"optimizer={name}"])
        optimizer = optim.build(cfg.optimizer, cfg.train.steps)
        shapes = jax.eval_shape(functools.partial(traced, optimizer, cfg.model), jax.random.PRNGKey(0))
        exact = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
        assert memory.step_bytes(cfg, optimizer)["optimizer state"] == exact
        assert memory.step_bytes(cfg, optimizer)["parameters"] == transformer.num_params(cfg.model) * 4


def test_a_prompt_longer_than_the_context_says_it_was_cut(tiny_run, capsys):
    assert main(["sample", str(tiny_run[0]), "--prompt", "a" * 5000, "--num-tokens", "2"]) == 0
    assert "(32 tokens; its first 4968 tokens cut to fit the context of 32)" in capsys.readouterr().out
