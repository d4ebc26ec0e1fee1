"""The engine's scanned steps: a run whose steps go through `lax.scan` between log points equals the same
run taken one jitted step at a time, row for row and bit for bit, and so does a resumed one."""

import shutil

import jax
import numpy as np
import pytest
from cases import micro

from sandbox.errors import SandboxError
from sandbox.train import checkpoint, loop, records, session
from sandbox.train.step import scan_length

LR_DIVERGES = 3e3  # an SGD step size at which the micro model's loss stops being finite after step 4
RUN = ("train.steps=40", "train.log_every=10", "train.eval_every=20", "train.checkpoint_every=20")


def rows(run):
    """metrics.jsonl without the wall-clock speed."""
    metrics = records.read_metrics(run / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in metrics]


def params(run):
    return jax.tree.leaves(checkpoint.load_run(run)[1])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A 40-step run logging every 10 steps: 4 scanned calls of 10 steps."""
    run = tmp_path_factory.mktemp("scan") / "scanned"
    session.start(micro(*RUN), run, progress=False)
    return run


def test_scan_length_lands_on_every_step_the_loop_stops_at():
    tc = micro(*RUN, "train.sharpness_every=15").train
    assert scan_length(tc, 0) == 5 and scan_length(tc, 35) == 5 and scan_length(tc, 12) == 1
    assert scan_length(micro(*RUN).train, 0) == 10 and scan_length(micro(*RUN).train, 20) == 10


def test_scanned_run_equals_one_step_at_a_time(scanned, tmp_path, monkeypatch):
    """Bit for bit: the scan's body is the same XLA computation as the single step (same fusions on CPU),
    so not even float32 rounding differs; a difference here means the steps themselves differ."""
    monkeypatch.setattr(loop, "scan_length", lambda tc, start: 1)
    single = tmp_path / "single"
    session.start(micro(*RUN), single, progress=False)
    assert rows(scanned) == rows(single) and [r["step"] for r in rows(single)] == [10, 20, 30, 40]
    for a, b in zip(params(scanned), params(single)):
        np.testing.assert_array_equal(a, b)


def test_resume_with_another_scan_length_is_bit_identical(scanned, tmp_path):
    """Cut at step 20 and resumed logging every 5 steps (calls of 5, not 10): the same parameters at step 40,
    and the same loss at the rows both runs log."""
    cut = tmp_path / "cut"
    shutil.copytree(scanned, cut)
    shutil.rmtree(cut / "checkpoints" / "40")
    session.resume(cut, ["train.log_every=5"], progress=False)
    for a, b in zip(params(scanned), params(cut)):
        np.testing.assert_array_equal(a, b)
    resumed = {r["step"]: r for r in rows(cut)}
    assert [r["step"] for r in rows(cut)] == [10, 20, 25, 30, 35, 40]
    assert resumed[40]["val_loss"] == rows(scanned)[-1]["val_loss"]
    assert resumed[40]["grad_norm"] == rows(scanned)[-1]["grad_norm"]


def diverge(run, lr):
    """(first bad step named in the message, checkpoints kept) of a 16-step SGD run that blows up."""
    cfg = micro("optimizer=sgd", f"optimizer.learning_rate={lr}", "optimizer.clip_norm=null",
                "optimizer.schedule=constant", "train.steps=16", "train.log_every=4", "train.checkpoint_every=4")
    with pytest.raises(SandboxError, match="NaN or infinite by step") as err:
        session.start(cfg, run, progress=False)
    first_bad = int(str(err.value).split("by step ")[1].split(";")[0])
    return first_bad, checkpoint.saved_steps(run)


def test_divergence_names_the_first_bad_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """The same diverging run, scanned in calls of 4 and one step at a time: both stop naming the same first
    non-finite step, keeping every checkpoint before it, each finite."""
    scanned_at = diverge(tmp_path / "scanned", LR_DIVERGES)
    monkeypatch.setattr(loop, "scan_length", lambda tc, start: 1)
    assert diverge(tmp_path / "single", LR_DIVERGES) == scanned_at
    first_bad, kept = scanned_at
    assert 4 < first_bad < 16 and kept == [s for s in (4, 8, 12) if s < first_bad]
    assert all(np.isfinite(x).all() for x in params(tmp_path / "scanned"))
