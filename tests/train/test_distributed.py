"""Multi-process training on this machine: `sandbox launch --local 2` (2 simulated CPU devices per process,
gloo collectives) trains as one process with 4 devices does (rtol 1e-5: the all-reduce sums in another order),
writes its files once, and resumes bit-identically."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import paths
import pytest
from conftest import TINY_RUN_OVERRIDES

from sandbox.errors import SandboxError
from sandbox.train import checkpoint, config, distributed, session

pytestmark = pytest.mark.slow  # two launches of 2 processes each: 304 s on a heavily loaded 2-core machine
ROOT = paths.ROOT
OVERRIDES = [*TINY_RUN_OVERRIDES, "optimizer.schedule=constant", "train.steps=4", "train.eval_every=2",
             "train.log_every=1", "train.checkpoint_every=2"]


def _launch(*argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "sandbox", "launch", "--local", "2", "--devices-per-process", "2", "--", *argv,
           "--no-progress"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return ([r["step"] for r in rows], np.array([r["train_loss"] for r in rows]),
            np.array([r["val_loss"] for r in rows if "val_loss" in r]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-process run of 4 steps; a copy of it cut back to its step-2 checkpoint and resumed by 2 processes;
    and one process on 4 of the 8 simulated devices."""
    tmp = tmp_path_factory.mktemp("distributed")
    multi, resumed = tmp / "multi", tmp / "resumed"
    first = _launch("train", "configs/tiny.yaml", *OVERRIDES, "--out", str(multi))
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(multi, resumed)
    checkpoint.drop(resumed, [4])
    again = _launch("train", "--resume", str(resumed))
    assert again.returncode == 0, again.stderr[-3000:]
    single = tmp / "single"
    session.start(config.load("configs/tiny.yaml", [*OVERRIDES, "train.num_devices=4"]), single, progress=False)
    return multi, resumed, single, first.stdout + again.stdout


def test_two_processes_of_two_devices_equal_one_process_of_four(runs):
    multi, _, single, stdout = runs
    steps, train_multi, val_multi = _losses(multi)
    _, train_single, val_single = _losses(single)
    assert steps == [1, 2, 3, 4] and len(val_multi) == 2  # one row per step: written once, by process 0
    np.testing.assert_allclose(train_multi, train_single, rtol=1e-5)
    np.testing.assert_allclose(val_multi, val_single, rtol=1e-5)
    summary = json.loads((multi / "summary.json").read_text())
    assert summary["num_devices"] == 4 and stdout.count("final val loss") == 2  # process 0 prints, twice


def test_resumed_multi_process_run_is_bit_identical(runs):
    multi, resumed, _, _ = runs
    steps, train_resumed, val_resumed = _losses(resumed)
    _, train_multi, val_multi = _losses(multi)
    assert steps == [1, 2, 3, 4] and json.loads((resumed / "resumes.jsonl").read_text())["from_step"] == 2
    np.testing.assert_array_equal(train_resumed, train_multi)
    np.testing.assert_array_equal(val_resumed, val_multi)
    _, got, step = checkpoint.load_run(resumed, step=4)
    _, want, _ = checkpoint.load_run(multi, step=4)
    assert step == 4
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_half_given_process_arguments_are_refused():
    with pytest.raises(SandboxError, match="go together"):
        distributed.initialize(num_processes=2, process_id=None, coordinator=None)


def test_a_refusal_in_one_process_is_one_line_and_ctrl_c_saves_every_process_at_one_step(runs, tmp_path):
    """A refused resume is reported once, by the launcher, naming the process; the other process is stopped (no
    barrier timeout, no abort report). SIGINT to the launcher reaches every process once: they agree on a step,
    save it together and exit 130 with the launch command that resumes them."""
    multi = runs[0]
    refused = _launch("train", "--resume", str(multi), "train.steps=8", "train.seed=3")
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-3000:]
    assert lines[0].startswith("error: process 0 of 2: --resume cannot change 'train.seed'")
    assert lines[0].endswith("the others were stopped") and "[Gloo]" not in refused.stdout

    live = tmp_path / "live"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "launch", "--local", "2", "--devices-per-process", "2",
                             "--", "train", "configs/tiny.yaml", *OVERRIDES, "train.steps=100000",
                             "train.checkpoint_every=1000", "--out", str(live), "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (live / "metrics.jsonl").is_file() or not (live / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    step = int(err.split("stopped after step ")[1].split()[0])
    assert checkpoint.saved_steps(live) == [step] and checkpoint.damage(live, step) is None
    assert f"`sandbox launch --local 2 --devices-per-process 2 -- train --resume {live}`" in err
    assert err.count("interrupted: ") == 1 and "Traceback" not in err
