"""Seeds trained at once with vmap equal separate runs; sampling from a run folder."""

import math

import jax
import numpy as np
import pytest
from cases import micro

from sandbox.cli import main
from sandbox.train import checkpoint, records, session


@pytest.mark.slow
def test_vmapped_seeds_equal_separate_runs(tmp_path):
    steps = ["train.steps=20", "train.eval_every=20", "train.checkpoint_every=20", "train.seed=3"]
    summary = session.start(micro(*steps, "train.num_seeds=2"), tmp_path / "both", progress=False)
    assert summary["num_seeds"] == 2 and summary["final_val_loss_std"] > 0
    for i in range(2):
        session.start(micro(*steps[:-1], f"train.seed={3 + i}"), tmp_path / f"s{i}", progress=False)
        _, alone, _ = checkpoint.load_run(tmp_path / f"s{i}")
        _, together, _ = checkpoint.load_run(tmp_path / "both", seed_index=i)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(together)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    val = [records.read_metrics(tmp_path / f"s{i}" / "metrics.jsonl")[-1]["val_loss"] for i in range(2)]
    last = records.read_metrics(tmp_path / "both" / "metrics.jsonl")[-1]
    assert last["val_loss"] == pytest.approx(np.mean(val), rel=1e-5)
    assert last["val_loss_std"] == pytest.approx(np.std(val), rel=1e-3)


def test_sample_greedy_is_deterministic_and_reports_entropy(tmp_path, capsys):
    run = tmp_path / "run"
    session.start(micro("train.steps=30", "train.eval_every=30", "train.checkpoint_every=30"), run, progress=False)
    args = ["sample", str(run), "--prompt", "abcab", "--num-tokens", "12", "--temperature", "0", "--entropy"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    lines = first.splitlines()
    assert lines[0].startswith("--- prompt (5 tokens)") and lines[1] == "abcab"
    assert lines[2].startswith("--- continuation (12 tokens")
    assert len(lines[3]) == 12 and set(lines[3]) <= set("abcd")
    entropies = [float(line.split()[-1]) for line in lines[6:-1]]
    assert len(entropies) == 12 and all(0 <= h <= math.log(4) + 1e-6 for h in entropies)


def test_sample_bad_input(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--prompt", "x"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["sample", str(tmp_path), "--prompt", "x", "--top-p", "1.5"]) == 2
    assert "--top-p" in capsys.readouterr().err
