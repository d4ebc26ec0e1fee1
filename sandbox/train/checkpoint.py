"""Checkpoints with orbax's CheckpointManager, verified by a manifest; reading a finished run back.

A checkpoint holds the whole `TrainState` (step, params, optimizer state), so resuming is
exact. It is saved only if every array of the state is finite, and once orbax has finished a
`manifest` (its run, its step, its files' sizes and checksums) is written beside it: a checkpoint
that disagrees with its manifest is damaged and never restored. The run folder's marker names the
step being saved (`saving`) until its manifest is written: a step folder without a manifest is an
unfinished save of this run only if the marker says so, and only then is it deleted before resuming;
any other folder there is a stranger, and a resume refuses to run beside it.
`load_run` is how every other tool (hessian, compress, sample, spectra) opens a run folder.
"""

import hashlib
import logging
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from omegaconf import OmegaConf

from sandbox import optim, rundir
from sandbox.errors import SandboxError
from sandbox.train import config as config_lib
from sandbox.train import interrupts, manifest, precision


class NonFinite(SandboxError):
    """A state holding NaN or infinite values (never saved, never loaded)."""


def manager(run_dir: Path, keep: int = 3, writer: bool = False) -> ocp.CheckpointManager:
    """Orbax's manager of the run's checkpoints; only the `writer` (who holds the run's lock) may save.

    The writer also drops the temporary folders of saves killed half-way (a reader must not: they
    may belong to a save in progress).
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                           cleanup_tmp_directories=writer, create=writer)
    return ocp.CheckpointManager((Path(run_dir) / "checkpoints").resolve(), options=options)


def _step_dirs(run_dir: Path) -> dict[int, Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return {}
    return {int(p.name): p for p in root.iterdir() if p.is_dir() and p.name.isdigit()}


def _verified(dirs: dict[int, Path]) -> bool:
    """Whether the run writes manifests (runs saved before manifests existed have none)."""
    return any(manifest.has(p) for p in dirs.values())


def saved_steps(run_dir: Path) -> list[int]:
    """The steps whose save finished (intact or not: restoring checks), oldest first."""
    dirs = _step_dirs(run_dir)
    return sorted(s for s, p in dirs.items() if manifest.has(p) or not _verified(dirs))


def unfinished_steps(run_dir: Path) -> list[int]:
    """Steps whose save never finished (killed before its manifest): to be dropped before resuming."""
    dirs, saving = _step_dirs(run_dir), (rundir.marker(run_dir) or {}).get("saving")
    return [saving] if saving in dirs and not manifest.has(dirs[saving]) else []


def strangers(run_dir: Path) -> list[Path]:
    """Folders under checkpoints/ named like a step that are neither a finished nor an unfinished save."""
    dirs, unfinished = _step_dirs(run_dir), unfinished_steps(run_dir)
    return sorted(p for s, p in dirs.items() if _verified(dirs) and not manifest.has(p) and s not in unfinished)


def damage(run_dir: Path, step: int) -> str | None:
    """What is wrong with the checkpoint at `step`, or None if it is intact."""
    dirs = _step_dirs(run_dir)
    if step not in dirs:
        return "it does not exist"
    return manifest.damage(dirs[step]) if _verified(dirs) else None


def newest_intact(run_dir: Path, below: int | None = None) -> int | None:
    """The latest step (before `below`) whose checkpoint is intact, or None."""
    for step in reversed(saved_steps(run_dir)):
        if (below is None or step < below) and damage(run_dir, step) is None:
            return step
    return None


def check_intact(run_dir: Path, step: int, retry: str) -> None:
    """Raise, naming the newest intact checkpoint and how to use it (`retry`), unless `step`'s is intact."""
    wrong = damage(run_dir, step)
    if wrong:
        good = newest_intact(run_dir, below=step)
        way = (f"the newest intact checkpoint is step {good}: {retry.format(step=good)}" if good is not None
               else "no earlier checkpoint is intact")
        where = Path(run_dir) / "checkpoints"
        raise SandboxError(f"the checkpoint at step {step} in {where} is damaged: {wrong}; {way}")


def drop(run_dir: Path, steps) -> None:
    """Delete the checkpoints at `steps` (unfinished saves, or damaged ones the user gave up)."""
    dirs = _step_dirs(run_dir)
    for step in steps:
        shutil.rmtree(dirs[step])
    if (rundir.marker(run_dir) or {}).get("saving") in steps:
        rundir.annotate(run_dir, saving=None)


def step_of(state) -> int:
    """The state's step (for several seeds stacked, they all share it)."""
    return int(np.asarray(state.step).reshape(-1)[0])


def nonfinite(tree) -> list[str]:
    """The paths of the floating-point leaves of `tree` that hold a NaN or an infinity."""
    return [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            if np.issubdtype(np.asarray(leaf).dtype, np.inexact) and not np.isfinite(leaf).all()]


def save(mngr: ocp.CheckpointManager, state) -> None:
    """Save `state` if all of it is finite, then write its manifest; a failed save leaves nothing."""
    host = jax.device_get(state)  # host copies: orbax would otherwise compile a slicing program per array
    step, bad = step_of(host), nonfinite(host)
    if bad:
        raise NonFinite(f"{len(bad)} arrays hold NaN or infinity, e.g. {bad[0]}; the state of step {step} "
                        "was not saved")
    run_dir = Path(mngr.directory).parent
    primary = jax.process_index() == 0  # orbax saves collectively; one process keeps the books
    try:
        with interrupts.held(), _quiet_orbax():
            if primary:
                rundir.annotate(run_dir, saving=step)
            mngr.save(step, args=ocp.args.StandardSave(host), force=True)
            mngr.wait_until_finished()
            if primary:
                manifest.write(_step_dirs(run_dir)[step])
                rundir.annotate(run_dir, saving=None)
    except Exception as e:
        _remove_unfinished(Path(mngr.directory), step)
        if primary:
            rundir.annotate(run_dir, saving=None)
        kept = newest_intact(run_dir)
        raise SandboxError(
            f"saving the checkpoint at step {step} in {run_dir} failed ({_reason(e)}); nothing of it is left, and "
            + ("no checkpoint was complete yet" if kept is None else
               f"the last complete checkpoint (step {kept}) is intact: once fixed, continue with "
               f"`sandbox train --resume {run_dir}`")) from None


def _remove_unfinished(directory: Path, step: int) -> None:
    """Delete what a failed save of `step` left. Orbax's other writer tasks of that save may still be
    running (the first failure ends the save, not them) and recreate files, so sweep until the folder
    has stayed clean for a moment (about a second at most)."""
    clean = 0
    for _ in range(20):
        found = [p for p in directory.glob(f"{step}.orbax-checkpoint-tmp*")]
        found += [p for p in directory.glob(str(step)) if not manifest.has(p)]
        for leftover in found:
            shutil.rmtree(leftover, ignore_errors=True)
        clean = 0 if found else clean + 1
        if clean == 3:
            return
        time.sleep(0.05)


# what the operating system said, found inside the text of orbax's and tensorstore's errors
_OS_REASONS = ("No space left on device", "Disk quota exceeded", "Permission denied", "Read-only file system",
               "File too large", "Input/output error")


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    found = next((r for r in _OS_REASONS if r in text), None)
    return found or ((text.splitlines() or [repr(e)])[0][:200])


@contextmanager
def _quiet_orbax():
    """Orbax logs each failure of its writer threads with a traceback, and after a failed write
    tensorstore's threads call back into orbax's closed event loop (Python prints each 'Event loop is
    closed') and its orphaned writer tasks are reported by asyncio ('Task exception was never
    retrieved'); the caller reports the failure once, so silence all three (the last two for good
    after a failure)."""
    absl, previous = logging.getLogger("absl"), sys.unraisablehook
    level = absl.level

    def hook(unraisable):
        if not (unraisable.exc_type is RuntimeError and "Event loop is closed" in str(unraisable.exc_value)):
            previous(unraisable)

    absl.setLevel(logging.CRITICAL)
    sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        raise
    else:
        sys.unraisablehook = previous
    finally:
        absl.setLevel(level)


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None,
            retry: str = "pass --step {step} to use it"):
    """The state at `step` (default: the latest), verified; `abstract_state` gives structure and shardings.

    A damaged checkpoint is refused naming the newest intact one; `retry` says how to use that one.
    """
    run_dir = Path(mngr.directory).parent
    steps = saved_steps(run_dir)
    if not steps:
        raise SandboxError(f"no checkpoint in {mngr.directory}: nothing to resume or load")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise SandboxError(f"no checkpoint at step {step} in {mngr.directory}; saved steps: {steps}")
    check_intact(run_dir, step, retry)
    # compare shapes first: a restore that fails half-way leaves orbax's reads dangling
    try:
        meta = ocp.PyTreeCheckpointHandler().metadata(Path(mngr.directory) / str(step) / "default")
    except Exception as e:
        raise SandboxError(f"cannot read the checkpoint at step {step} in {mngr.directory}: "
                           f"{(str(e).splitlines() or [repr(e)])[0]}") from None
    saved = sorted(tuple(m.shape) for m in jax.tree.leaves(meta))
    if saved != sorted(tuple(a.shape) for a in jax.tree.leaves(abstract_state)):
        raise SandboxError(f"the checkpoint at step {step} in {mngr.directory} does not match the config: "
                           "its arrays have other shapes (a changed model or optimizer?)")
    try:
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except ValueError as e:
        raise SandboxError(
            f"the checkpoint at step {step} in {mngr.directory} does not match the config "
            f"(a changed model or optimizer?): {str(e).splitlines()[0]}"
        ) from None


def config_fields(text: str) -> dict:
    """{"marker field": value} recording a run's config.yaml `text` (its SHA-256 and the text itself)."""
    return {"config_sha256": hashlib.sha256(text.encode()).hexdigest(), "config": text}


def _edits(before: str, after: str) -> str:
    """The dotted keys whose values differ between two config texts, e.g. 'train.seed: 0 -> 7'."""
    def flat(text):
        try:
            return dict(_flatten(OmegaConf.to_container(OmegaConf.create(text))))
        except Exception:
            return {}
    a, b = flat(before), flat(after)
    changed = [f"{k}: {a.get(k, '(none)')} -> {b.get(k, '(none)')}" for k in sorted(a.keys() | b.keys())
               if a.get(k) != b.get(k)]
    return "; ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "") or "its text"


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def load_config(run_dir: str | Path) -> config_lib.Config:
    """The run's config; refused if config.yaml was edited since the sandbox wrote it (SHA-256 in the marker)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise SandboxError(f"{run_dir} is not a run folder: it has no config.yaml")
    note = rundir.marker(run_dir) or {}
    if note.get("config_sha256"):
        text = path.read_text(errors="replace")
        if hashlib.sha256(path.read_bytes()).hexdigest() != note["config_sha256"]:
            raise SandboxError(f"{path} was edited since the run began ({_edits(note.get('config', ''), text)}); "
                               "a run's config must describe how it was trained: undo the edit, or start a new "
                               "run (`sandbox train --resume` changes only train.steps and the cadence)")
    return config_lib.load(path)


def load_state(run_dir: str | Path, step: int | None = None):
    """(cfg, the whole train state as saved: params in the policy's dtype, optimizer and policy state) of a
    run folder's checkpoint (default: the latest), verified."""
    from sandbox.train.step import init_state, seed_keys

    cfg = load_config(run_dir)
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    keys, _ = seed_keys(cfg.train.seed, cfg.train.num_seeds)
    init = jax.vmap(lambda k: init_state(k, cfg, optimizer)) if cfg.train.num_seeds > 1 else (
        lambda ks: init_state(ks[0], cfg, optimizer))
    abstract = jax.eval_shape(init, keys)
    with manager(run_dir) as mngr:
        return cfg, restore(mngr, abstract, step)


def load_run(run_dir: str | Path, step: int | None = None, seed_index: int = 0):
    """(cfg, params, step) of a run folder's checkpoint (default: the latest), verified and finite.

    For a run of several seeds trained at once, `seed_index` picks one of them.
    """
    cfg, state = load_state(run_dir, step)
    # bf16/fp16 runs: the tools (LAPACK, Lanczos) read float32 copies of the weights
    params = precision.at_least_float32(state.params)
    step = step_of(state)
    bad = nonfinite(params)
    if bad:
        raise NonFinite(f"the checkpoint at step {step} in {run_dir} holds NaN or infinite parameters "
                        f"in {len(bad)} arrays (e.g. {bad[0]}); its model cannot be used. "
                        f"Saved steps: {saved_steps(run_dir)} (pass --step to pick another)")
    if cfg.train.num_seeds > 1:
        if not 0 <= seed_index < cfg.train.num_seeds:
            raise SandboxError(f"seed_index {seed_index} out of range: the run has {cfg.train.num_seeds} seeds")
        params = jax.tree.map(lambda x: x[seed_index], params)
    return cfg, params, step
