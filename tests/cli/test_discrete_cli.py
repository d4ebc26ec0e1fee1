"""`sandbox sample --regex` and `sandbox attention` on one small trained run."""

import json

import numpy as np
import pytest
import regex
from cases import micro

from sandbox.cli import main
from sandbox.rundir import marker


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from sandbox.train import session

    path = tmp_path_factory.mktemp("discrete") / "run"
    session.start(micro("train.steps=10", "train.eval_every=10", "train.checkpoint_every=10"), path, progress=False)
    return path


def test_sample_cli_with_regex(run, capsys):
    pattern = "(ab|cd)+a"
    assert main(["sample", str(run), "--prompt", "ab", "--regex", pattern, "-n", "5", "--num-tokens", "9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("--- 5 samples matching")) + 1
    texts = [line.split(maxsplit=2)[2] for line in lines[first : first + 5]]
    assert all(regex.fullmatch(pattern, t.strip("'")) for t in texts), texts
    assert lines[first + 5].startswith("5/5 match in full")
    assert main(["sample", str(run), "--prompt", "ab", "--regex", "(a)\\1"]) == 2
    assert "uses backreferences" in capsys.readouterr().err
    assert main(["sample", str(run), "--prompt", "ab", "--regex", "[0-9]"]) == 2  # symbols a-d spell no digit
    assert "cannot complete" in capsys.readouterr().err


def test_attention_cli_writes_figures_and_summary(run, capsys):
    assert main(["attention", str(run), "--text", "abcabcdd"]) == 0
    out = capsys.readouterr().out
    folder = next(run.glob("attention-*"))
    assert str(folder) in out and marker(folder)["command"] == "attention"
    summary = json.loads((folder / "summary.json").read_text())
    figures = {"entropy.png", "markov.png", "layers.png", "rollout_flow.png", "graph.png"}
    assert figures <= {p.name for p in folder.iterdir()}
    entropy = np.array(summary["entropy"])
    assert entropy.shape == (summary["layers"], summary["heads"])
    assert (entropy >= 0).all() and (entropy <= np.log(8) + 1e-6).all()  # at most uniform over 8 keys
    np.testing.assert_allclose(np.array(summary["rollout"]).sum(-1), 1.0, atol=1e-5)  # rows stay stochastic
    assert main(["attention", str(run), "--text", "ab", "--out", str(run)]) == 2  # the run is an input
    assert "input of this command" in capsys.readouterr().err
    assert main(["attention", "minilm", "--text", "hi"]) == 2
    assert "--out" in capsys.readouterr().err
