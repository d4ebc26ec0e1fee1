"""Each way a run could be lost or mislead, performed through the `sandbox` command in a subprocess.

Every test asserts the message, the exit code and what is on disk afterwards. Subprocesses start
jax (seconds each), so one trained run is shared by the module and most commands run in one
subprocess per test (`cli`), each command through `sandbox.cli.main` exactly as the shell runs it.
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import paths
import pytest

from sandbox import optim, rundir
from sandbox.train import checkpoint, manifest, records
from sandbox.train.step import init_state

ROOT = paths.ROOT
TINY = ["configs/tiny.yaml", "model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=64",
        "model.seq_len=32", "train.batch_size=4", "train.eval_batches=1", "optimizer.schedule=constant"]
RUN = [*TINY, "train.steps=12", "train.eval_every=6", "train.log_every=3", "train.checkpoint_every=1",
       "train.keep_checkpoints=3"]
# the commands share the suite's compilation cache (conftest sets SANDBOX_COMPILE_CACHE, inherited here)
ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "PYTHONPATH": str(ROOT)}

# runs several commands in one python process, each through sandbox.cli.main, and reports each one's
# exit code, stdout and stderr as JSON on the last line
DRIVER = """
import contextlib, io, json, sys
from sandbox.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    results.append({"rc": rc, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def cli(*commands, cwd=ROOT, prefix=()):
    """[{"rc", "out", "err"}] of each `sandbox` command (a list of arguments), run in one subprocess."""
    proc = subprocess.run([*prefix, sys.executable, "-c", DRIVER, json.dumps([list(map(str, c)) for c in commands])],
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return results


def start(*args) -> subprocess.Popen:
    """`python -m sandbox ARGS` in the background (stdout is a pipe, not a terminal)."""
    return subprocess.Popen([sys.executable, "-m", "sandbox", *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (the lock file aside) -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".sandbox.lock"}


def params_of(run: Path, step=None):
    return jax.tree.leaves(checkpoint.load_run(run, step)[1])


def losses(run: Path) -> list:
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in records.read_metrics(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 12-step run with a checkpoint after every step (the last 3 kept), and its stdout."""
    run = tmp_path_factory.mktemp("faults") / "run"
    proc = subprocess.run([sys.executable, "-m", "sandbox", "train", *RUN, "--out", str(run)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc.stdout


def copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def test_plain_progress_lines_when_not_a_terminal(trained):
    run, stdout = trained
    lines = [line for line in stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["3/12", "6/12", "9/12", "12/12"]  # log_every=3
    assert "val loss" in lines[1] and "val loss" not in lines[0]  # eval_every=6
    assert all("tokens/s" in line and "ETA" in line for line in lines)
    assert checkpoint.saved_steps(run) == [10, 11, 12] and (run / ".sandbox.json").is_file()


def test_resume_is_a_continuation_never_a_rewrite(trained, tmp_path):
    run = copy(trained[0], tmp_path / "run")
    before = snapshot(run)
    results = cli(["train", "--resume", run],
                  ["train", "--resume", run, "train.steps=8"],
                  ["train", "--resume", run, "train.steps=20", "train.seed=7"],
                  ["train", "--resume", run, "train.steps=20", "optimizer=adam"],
                  ["train", "--resume", run, "train.steps=20", "data.corpus=markov"])
    assert [r["rc"] for r in results] == [2] * 5
    assert "has finished: it trained all 12 steps" in results[0]["err"]
    assert "has finished" in results[1]["err"]
    for r, key in zip(results[2:], ("train.seed", "optimizer", "data.corpus")):
        assert f"--resume cannot change {key!r}" in r["err"] and "nothing was changed" in r["err"]
    assert snapshot(run) == before  # not a byte changed, config.yaml included

    # a cosine schedule is laid out over train.steps: stretching it is refused too (the run's config is
    # rewritten as the sandbox would have written it: an edit by hand is refused, see test_ownership.py)
    cosine = copy(run, tmp_path / "cosine")
    text = (run / "config.yaml").read_text().replace("schedule: constant", "schedule: cosine")
    (cosine / "config.yaml").write_text(text)
    rundir.annotate(cosine, **checkpoint.config_fields(text))
    result, = cli(["train", "--resume", cosine, "train.steps=20"])
    assert result["rc"] == 2 and "cosine learning-rate schedule" in result["err"]

    result, = cli(["train", "--resume", run, "train.steps=15", "train.log_every=5"])
    assert result["rc"] == 0 and "resuming" in result["out"] and "from its checkpoint at step 12" in result["out"]
    resumes = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert [(r["from_step"], r["to_step"]) for r in resumes] == [(12, 15)]
    saved = (run / "config.yaml").read_text()
    assert "steps: 15" in saved and "log_every: 5" in saved and "seed: 0" in saved


def _damage(run: Path, how: str) -> None:
    step = run / "checkpoints" / "12"
    data = step / "default" / "ocdbt.process_0"
    biggest = max((p for p in data.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    if how == "truncated":
        os.truncate(biggest, biggest.stat().st_size // 2)
    elif how == "empty metadata":
        (step / "default" / "_METADATA").write_bytes(b"")
    elif how == "missing ocdbt":
        shutil.rmtree(data)
    else:  # 400 flipped bytes in the middle of the largest array file
        raw = bytearray(biggest.read_bytes())
        middle = len(raw) // 2
        raw[middle:middle + 400] = bytes(b ^ 0xFF for b in raw[middle:middle + 400])
        biggest.write_bytes(bytes(raw))


def test_damaged_checkpoints_are_refused_naming_the_newest_intact_one(trained, tmp_path):
    runs = {how: copy(trained[0], tmp_path / how.replace(" ", "_"))
            for how in ("truncated", "empty metadata", "missing ocdbt", "flipped bytes")}
    for how, run in runs.items():
        _damage(run, how)
    before = {how: snapshot(run) for how, run in runs.items()}
    flipped = runs["flipped bytes"]
    results = cli(*[["sample", run, "--prompt", "The", "--num-tokens", "4"] for run in runs.values()],
                  ["train", "--resume", flipped, "train.steps=14"],
                  ["train", "--resume", flipped, "--from-step", "10"],
                  ["train", "--resume", flipped, "--from-step", "11"])
    for r in results[:4]:
        assert r["rc"] == 2 and "the checkpoint at step 12" in r["err"] and "is damaged" in r["err"]
        assert "the newest intact checkpoint is step 11: pass --step 11" in r["err"]
    assert "truncated" in results[0]["err"] and "does not match its checksum" in results[3]["err"]
    assert f"sandbox train --resume {flipped} --from-step 11" in results[4]["err"] and results[4]["rc"] == 2
    assert results[5]["rc"] == 2 and "the checkpoint at step 11 is later and intact" in results[5]["err"]
    for how, run in runs.items():
        if how != "flipped bytes":
            assert snapshot(run) == before[how]
    # continuing from step 11 replaces the damaged step 12 and lands exactly where the intact run did
    assert results[6]["rc"] == 0, results[6]["err"]
    assert checkpoint.saved_steps(flipped)[-1] == 12 and checkpoint.damage(flipped, 12) is None
    for a, b in zip(params_of(trained[0]), params_of(flipped)):
        np.testing.assert_array_equal(a, b)


def test_sigkill_during_checkpoint_writes_then_bit_identical_resume(trained, tmp_path):
    """Killed at random moments while checkpoints are written (one per step): resuming lands exactly where
    the uninterrupted run did, and no temporary or unfinished checkpoint is left behind."""
    rng = random.Random(0)
    trials = [tmp_path / f"kill{i}" for i in range(3)]
    procs = [start("train", *RUN, "--out", run) for run in trials]
    for proc, run in zip(procs, trials):
        after, deadline = rng.randint(1, 9), time.time() + 300
        while not checkpoint.saved_steps(run) or checkpoint.saved_steps(run)[-1] < after:  # writes under way
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = {run: checkpoint.saved_steps(run)[-1] for run in trials}
    cut = [run for run in trials if killed_at[run] < 12]  # a fast machine may finish before the kill lands
    assert cut, "every trial finished before the kill: no checkpoint write was interrupted"
    results = cli(*[["train", "--resume", run] for run in cut])
    for r, run in zip(results, cut):
        assert r["rc"] == 0, r["err"]
        assert f"from its checkpoint at step {killed_at[run]}" in r["out"]
    for run in trials:
        assert not list((run / "checkpoints").glob("*tmp*")) and checkpoint.unfinished_steps(run) == []
        assert losses(run) == losses(trained[0])
        for a, b in zip(params_of(trained[0]), params_of(run)):
            np.testing.assert_array_equal(a, b)


def test_nan_at_step_one_is_never_saved_and_overflowing_config_refused(trained, tmp_path):
    nan_run, overflow = tmp_path / "nan", tmp_path / "overflow"
    bad = copy(trained[0], tmp_path / "bad")  # a checkpoint with NaN parameters but an intact manifest
    _, params, _ = checkpoint.load_run(bad, 12)
    cfg = checkpoint.load_config(bad)
    state = init_state(jax.random.PRNGKey(0), cfg, optim.build(cfg.optimizer, cfg.train.steps))
    poisoned = state.replace(step=np.int32(13), params=jax.tree.map(lambda x: x * np.nan, params))
    with checkpoint.manager(bad, keep=10, writer=True) as mngr:  # orbax directly: the sandbox would refuse
        mngr.save(13, args=ocp.args.StandardSave(poisoned), force=True)
        mngr.wait_until_finished()
    manifest.write(bad / "checkpoints" / "13")
    results = cli(["train", *TINY, "train.steps=4", "train.checkpoint_every=1", "optimizer=sgd",
                   "optimizer.learning_rate=3e38", "optimizer.clip_norm=null", "model.init_std=3", "--out", nan_run],
                  ["train", *TINY, "optimizer.learning_rate=1e39", "--out", overflow],
                  ["sample", bad, "--prompt", "The"])
    assert results[0]["rc"] == 2 and "the train state became NaN or infinite by step 1" in results[0]["err"]
    assert "no checkpoint had been saved yet" in results[0]["err"] and checkpoint.saved_steps(nan_run) == []
    assert results[1]["rc"] == 2 and "'optimizer.learning_rate' = 1e+39" in results[1]["err"]
    assert not overflow.exists()
    assert results[2]["rc"] == 2 and "holds NaN or infinite parameters" in results[2]["err"]
    assert "\x00" not in results[2]["out"]


def _can_mount_tmpfs() -> bool:
    try:
        return subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


INJECT_ENOSPC = """
import errno, sys
from sandbox.train import manifest
def full(folder):
    raise OSError(errno.ENOSPC, "No space left on device", str(folder))
if "--full-at" in sys.argv:  # the save of this step finds the disk full
    at = sys.argv.pop(sys.argv.index("--full-at") + 1); sys.argv.remove("--full-at")
    real = manifest.write
    manifest.write = lambda folder: full(folder) if folder.name == at else real(folder)
"""


def test_full_disk_during_a_checkpoint_keeps_the_last_complete_one(tmp_path):
    """A small tmpfs where one can be mounted (a user namespace); else ENOSPC injected into the save."""
    args = ["train", *TINY, "train.steps=8", "train.checkpoint_every=1", "train.keep_checkpoints=10"]
    if _can_mount_tmpfs():
        disk = tmp_path / "disk"
        disk.mkdir()
        run = disk / "run"
        script = (f"mount -t tmpfs -o size=600k tmpfs {disk} && {sys.executable} -m sandbox "
                  f"{' '.join(args)} --out {run}; echo rc=$?; ls {run}/checkpoints; "
                  f"find {run} -name '*tmp*'; cat {run}/checkpoints/*/sandbox_manifest.json | wc -l")
        proc = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=600)
        lines = proc.stdout.split("rc=")[1].splitlines()
        rc, listing = int(lines[0]), lines[1:-1]
        err = proc.stderr
    else:
        run = tmp_path / "run"
        proc = subprocess.run([sys.executable, "-c", INJECT_ENOSPC + "from sandbox.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", *args, "--out", str(run), "--full-at", "3"],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
        rc, err = proc.returncode, proc.stderr
        listing = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert not list(run.rglob("*tmp*"))
    assert rc == 2 and "No space left on device" in err and "Traceback" not in err, err[-2000:]
    kept = int(err.split("the last complete checkpoint (step ")[1].split(")")[0])
    assert listing == [str(s) for s in range(1, kept + 1)]  # the complete ones, nothing half-written beside them
    assert "continue with `sandbox train --resume" in err


def test_two_writers_on_one_folder_and_ctrl_c(tmp_path):
    run = tmp_path / "live"
    writer = start("train", *TINY, "train.steps=100000", "train.log_every=1", "train.eval_every=100000",
                   "train.checkpoint_every=5", "--out", run)
    deadline = time.time() + 300
    while not checkpoint.saved_steps(run):
        assert writer.poll() is None and time.time() < deadline, writer.stderr.read() if writer.poll() else "timeout"
        time.sleep(0.05)
    results = cli(["train", "--resume", run, "train.steps=200000"],
                  ["train", *TINY, "--out", run, "--force"])
    for r in results:
        assert r["rc"] == 2 and f"is being written by another sandbox process (pid {writer.pid})" in r["err"]
    assert writer.poll() is None  # the first writer is untouched and still training
    writer.send_signal(signal.SIGINT)
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 130 and "Traceback" not in err
    assert "interrupted: SIGINT: stopped after step" in err and "saved a verified checkpoint there" in err
    assert f"continue with `sandbox train --resume {run}`" in err
    result, = cli(["train", "--resume", run, "train.steps=1"])  # the lock went with the process
    assert result["rc"] == 2 and "has finished" not in result["err"] and "being written" not in result["err"]


def _stop_at(procs: list, runs: list, step: int, signals: list) -> list[str]:
    """Send each process its signals (one after the other at once) when its metrics.jsonl has reached `step`;
    their stderr."""
    waiting, deadline = set(range(len(procs))), time.time() + 300
    while waiting:
        for i in sorted(waiting):
            assert procs[i].poll() is None and time.time() < deadline, procs[i].communicate()[1][-2000:]
            if (rows := records.read_metrics(runs[i] / "metrics.jsonl")) and rows[-1]["step"] >= step:
                for signum in signals[i]:
                    procs[i].send_signal(signum)
                waiting.remove(i)
        time.sleep(0.02)
    return [proc.communicate(timeout=120)[1] for proc in procs]


@pytest.mark.slow
def test_sigint_and_sigterm_save_where_they_stop_and_the_resume_is_bit_identical(tmp_path):
    """A first signal finishes the step group, saves a verified checkpoint there (none was due: checkpoint_every is
    1000) and exits 130 / 143 with the resume command; resumed, every row and every parameter equal those of a run
    never interrupted (a constant schedule: train.steps may grow on resume). A second signal aborts at once."""
    args = [*TINY, "train.log_every=2", "train.eval_every=10", "train.checkpoint_every=1000"]
    by_int, by_term, twice = runs = [tmp_path / name for name in ("int", "term", "twice")]
    procs = [start("train", *args, "train.steps=1000000", "--out", run) for run in runs]
    errs = _stop_at(procs, runs, 4, [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGTERM]])
    assert [p.returncode for p in procs] == [130, 143, 143], errs
    stopped = []
    for err, run, name in zip(errs, (by_int, by_term), ("SIGINT", "SIGTERM")):
        stopped.append(int(err.split(f"interrupted: {name}: stopped after step ")[1].split()[0]))
        assert checkpoint.saved_steps(run) == [stopped[-1]] and checkpoint.damage(run, stopped[-1]) is None
        assert f"continue with `sandbox train --resume {run}`" in err and "Traceback" not in err
    assert "a second signal (SIGTERM) aborted the run at once, without saving" in errs[2]
    assert checkpoint.saved_steps(twice) == [] and "no checkpoint had been saved yet" in errs[2]
    steps, whole = max(stopped) + 10, tmp_path / "whole"
    results = cli(["train", *args, f"train.steps={steps}", "--out", whole],
                  *[["train", "--resume", run, f"train.steps={steps}"] for run in (by_int, by_term)])
    assert [r["rc"] for r in results] == [0, 0, 0], results
    for run in (by_int, by_term):
        assert losses(run) == losses(whole)
        for a, b in zip(params_of(whole), params_of(run)):
            np.testing.assert_array_equal(a, b)


def test_bad_requests_are_refused_before_any_folder_is_made(trained, tmp_path):
    """From a folder that is not the repository: config paths resolve against the sandbox's own configs."""
    notes, note_file, corpus = tmp_path / "notes", tmp_path / "notes.txt", tmp_path / "corpus.txt"
    notes.mkdir()
    (notes / "ideas.md").write_text("mine")
    note_file.write_text("mine")
    corpus.write_text("hello world, hello there " * 20)
    o = {k: tmp_path / k for k in ("b1", "wd", "big", "exp", "file", "sharp", "fresh")}
    o["file"].write_text("mine")
    results = cli(["train", *TINY, "optimizer.args.b1=abc", "--out", o["b1"]],
                  ["train", *TINY, "optimizer.args.weight_decay=.nan", "--out", o["wd"]],
                  ["train", *TINY, "train.batch_size=1000000", "--out", o["big"]],
                  ["run", "quickstart", "overrides=[train.stepz=3]", "--out", o["exp"]],
                  ["train", *TINY, "--out", notes, "--force"],
                  ["train", *TINY, "--out", o["file"]],
                  ["tokenize", "train", corpus, "--vocab-size", "260", "--out", note_file, "--force"],
                  ["sample", trained[0], "--prompt", "The", "--temperature", "nan"],
                  ["list", "optimizers"],
                  ["train", *TINY, "train.steps=4", "train.log_every=4", "train.eval_every=4",
                   "train.checkpoint_every=4", "train.sharpness_every=3", "--out", o["sharp"]],
                  ["train", *TINY, "train.steps=2", "--out", o["fresh"]],
                  ["train", *TINY, "train.steps=3", "--out", o["fresh"], "--force"],
                  cwd=tmp_path)
    expected = ["optimizer.args.b1='abc' must be a number", "'optimizer.args.weight_decay' = nan",
                "one training step needs about", "unknown config key 'train.stepz'", "was not made by the sandbox",
                "is a file, not a folder", "was not made by the sandbox", "(--temperature) must be a finite number"]
    for r, message in zip(results, expected):
        assert r["rc"] == 2 and message in r["err"], (message, r["err"])
    for key in ("b1", "wd", "big", "exp"):
        assert not o[key].exists()
    assert (notes / "ideas.md").read_text() == note_file.read_text() == o["file"].read_text() == "mine"
    assert results[8]["rc"] == 0 and "0x" not in results[8]["out"] and "adamw" in results[8]["out"]
    # sharpness_every=3 is honoured although step 3 is neither logged, evaluated nor saved
    assert results[9]["rc"] == 0 and [("sharpness" in r) for r in records.read_metrics(o["sharp"] / "metrics.jsonl")
                                      ] == [True, False]
    assert results[10]["rc"] == results[11]["rc"] == 0 and checkpoint.saved_steps(o["fresh"]) == [3]


def test_analyses_never_write_over_their_input_run(trained, tmp_path):
    run = copy(trained[0], tmp_path / "run")
    before = snapshot(run)
    results = cli(["compress", run, "--method", "svd", "--fractions", "0.5", "--out", run, "--force"],
                  ["spectra", run, "--out", run, "--force"])
    assert snapshot(run) == before
    for r in results:
        assert r["rc"] == 2 and "an input of this command" in r["err"]
