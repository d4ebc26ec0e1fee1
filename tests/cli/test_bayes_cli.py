"""`sandbox bayes RUN` on a micro trained LM: numbers and figures in a new child folder; bad input exits 2."""

import json
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.train import config, session

MICRO = ["data.corpus=markov", "data.markov.alphabet=4", "data.markov.order=2", "data.markov.length=20000",
         "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.seq_len=32",
         "train.batch_size=8", "train.steps=20", "train.eval_every=20", "train.checkpoint_every=20",
         "train.log_every=20"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "micro"
    session.start(config.load("configs/tiny.yaml", MICRO), path, progress=False)
    return path


@pytest.mark.slow
def test_bayes_writes_calibration_of_map_temperature_and_laplace(run_dir, capsys):
    assert main(["bayes", str(run_dir), "--fit-windows", "8", "--val-windows", "8"]) == 0
    (out,) = [p for p in Path(run_dir).iterdir() if p.name.startswith("bayes-")]
    result = json.loads((out / "bayes.json").read_text())
    assert set(result["metrics"]) == {"MAP", "temperature", "Laplace", "Laplace (evidence prior)"}
    assert result["test_tokens"] == 4 * 32 and result["head_parameters"] == 32 * result["vocab_size"]
    for m in result["metrics"].values():
        assert 0 <= m["ece"] <= 1 and m["nll"] > 0 and 0 <= m["brier"] <= 2
        assert all(0 < m[f"{k}_se"] < 0.5 for k in ("ece", "nll", "brier", "accuracy"))  # bootstrap error bars
    edge = {1e-4: "lower", 1e4: "upper"}.get(round(result["prior_precision"], 8))
    assert result["prior_at_grid_edge"] == edge
    said = capsys.readouterr().out
    assert "± one bootstrap standard error" in said and (edge is None) == ("end of its grid" not in said)
    # temperature scaling and the prior were chosen on the tuning half; the Laplace predictive at a
    # finite prior has at least the MAP's entropy per token on average (the probit flattens the softmax)
    for name in ("Laplace", "Laplace (evidence prior)"):
        assert result["metrics"][name]["mean_entropy"] >= result["metrics"]["MAP"]["mean_entropy"] - 1e-6
    for name in ("reliability.png", "entropy.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert main(["bayes", str(run_dir), "--out", str(out)]) == 2  # non-empty --out without --force
    assert "already exists" in capsys.readouterr().err
    assert main(["bayes", str(run_dir), "--out", str(run_dir), "--force"]) == 2  # the run is an input


def test_bayes_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["bayes", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written
