"""The engine end to end: learning a Markov source, exact resume, data parallelism, divergence."""

import json
import shutil

import jax
import numpy as np
import pytest
from cases import MICRO, micro

from sandbox.cli import main
from sandbox.train import checkpoint, config, records, session


@pytest.mark.slow
def test_learns_markov_source_to_its_entropy_rate(tmp_path):
    cfg = micro("train.steps=600", "train.eval_every=100", "train.checkpoint_every=600",
                "optimizer.learning_rate=1e-2")
    summary = session.start(cfg, tmp_path / "run", progress=False)
    assert summary["final_val_loss"] == pytest.approx(summary["entropy_rate"], rel=0.10)
    assert summary["final_val_loss"] >= summary["entropy_rate"] * 0.97  # no model beats the Bayes loss
    assert (tmp_path / "run" / "figures" / "loss.png").stat().st_size > 10_000


def test_resume_is_bit_identical(tmp_path):
    cfg = micro("train.steps=40", "train.eval_every=20", "train.checkpoint_every=20")
    full, cut = tmp_path / "full", tmp_path / "cut"
    session.start(cfg, full, progress=False)
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "40")  # as if the run had died after step 20's checkpoint
    session.resume(cut, progress=False)
    _, params_full, step_full = checkpoint.load_run(full)
    _, params_cut, step_cut = checkpoint.load_run(cut)
    assert step_full == step_cut == 40
    for a, b in zip(jax.tree.leaves(params_full), jax.tree.leaves(params_cut)):
        np.testing.assert_array_equal(a, b)
    losses = lambda d: [r["train_loss"] for r in records.read_metrics(d / "metrics.jsonl")]  # noqa: E731
    assert losses(full) == losses(cut) and len(losses(cut)) == 4


def test_eight_devices_match_one(tmp_path):
    assert len(jax.devices()) == 8, "tests/conftest.py simulates 8 CPU devices"
    runs = {}
    for n in (1, 8):
        cfg = micro("train.steps=20", "train.eval_every=20", "train.checkpoint_every=20", f"train.num_devices={n}")
        summary = session.start(cfg, tmp_path / f"d{n}", progress=False)
        assert summary["num_devices"] == n
        runs[n] = records.read_metrics(tmp_path / f"d{n}" / "metrics.jsonl")
    np.testing.assert_allclose([r["train_loss"] for r in runs[8]], [r["train_loss"] for r in runs[1]], rtol=1e-5)
    np.testing.assert_allclose(runs[8][-1]["val_loss"], runs[1][-1]["val_loss"], rtol=1e-5)


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "nan"
    # a step size that blows the loss up within a few steps: the run must stop, keeping only finite states
    assert main(["train", "configs/tiny.yaml", *MICRO, "optimizer=sgd", "optimizer.learning_rate=1e30",
                 "optimizer.clip_norm=null", "optimizer.schedule=constant", "train.steps=20",
                 "train.checkpoint_every=1", "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    steps = checkpoint.saved_steps(run)
    assert "NaN or infinite" in err and f"last good checkpoint (step {steps[-1]})" in err and "Traceback" not in err
    assert 1 <= steps[-1] < 20
    _, params, step = checkpoint.load_run(run)
    assert step == steps[-1] and all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "configs/tiny.yaml", "model.widht=3", "--out", str(out)]) == 2
    assert "unknown config key 'model.widht'" in capsys.readouterr().err and not out.exists()
    assert main(["train", "configs/tiny.yaml", "data.corpus=/no/such/file.txt", "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()
    assert main(["train", "configs/tiny.yaml", "model.seq_len=100000", "--out", str(out)]) == 2
    assert "seq_len" in capsys.readouterr().err and not out.exists()
    assert main(["train", "configs/tiny.yaml", "optimizer.name=adamm", "--out", str(out)]) == 2
    assert "adam" in capsys.readouterr().err and not out.exists()


def test_existing_run_folder_is_never_clobbered(tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["train", "configs/tiny.yaml", *MICRO, "train.steps=5", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "notes.txt").read_text() == "keep me"


def test_resume_without_checkpoint(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text(config.to_yaml(micro()))
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_resume_with_incompatible_change(tmp_path, capsys):
    session.start(micro("train.steps=5", "train.eval_every=5"), tmp_path / "r", progress=False)
    assert main(["train", "--resume", str(tmp_path / "r"), "model.d_ff=96"]) == 2
    assert "cannot change 'model.d_ff'" in capsys.readouterr().err


def test_summary_interface(tmp_path):
    summary = session.start(micro("train.steps=10", "train.eval_every=10"), tmp_path / "s", progress=False)
    on_disk = json.loads((tmp_path / "s" / "summary.json").read_text())
    for key in ("steps", "final_train_loss", "final_val_loss", "tokens_per_second", "num_params", "wall_seconds"):
        assert on_disk[key] == summary[key]
    # d=32, V=4, L=32, F=64, one layer, tied: embeddings + positions + 4 attention matrices + MLP + 3 norms
    assert on_disk["num_params"] == 4 * 32 + 32 * 32 + 4 * 32 * 32 + 2 * 32 * 64 + 3 * 2 * 32


def test_hessian_aware_optimizer_trains_through_the_engine(tmp_path):
    """Sophia-H probes the loss itself: the train step hands it obj_fn on the step's batch."""
    cfg = micro("optimizer=sophia", "optimizer.learning_rate=1e-2", "train.steps=40", "train.eval_every=40")
    summary = session.start(cfg, tmp_path / "sophia", progress=False)
    assert summary["final_val_loss"] < 0.95 * np.log(4)  # below the uniform guess over 4 symbols
