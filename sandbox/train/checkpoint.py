"""Checkpoints with orbax's CheckpointManager, and reading a finished run back.

A checkpoint holds the whole `TrainState` (step, params, optimizer state), so resuming is
exact. `load_run` is how every other tool (hessian, compress, sample) opens a run folder.
"""

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from sandbox import config as config_lib
from sandbox import optim
from sandbox.errors import SandboxError


def manager(run_dir: Path, keep: int = 3) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
    return ocp.CheckpointManager((Path(run_dir) / "checkpoints").resolve(), options=options)


def saved_steps(run_dir: Path) -> list[int]:
    """The steps of the checkpoints kept in a run folder, oldest first."""
    if not (Path(run_dir) / "checkpoints").is_dir():
        return []
    with manager(run_dir) as mngr:
        return sorted(mngr.all_steps())


def step_of(state) -> int:
    """The state's step (for several seeds stacked, they all share it)."""
    return int(np.asarray(state.step).reshape(-1)[0])


def save(mngr: ocp.CheckpointManager, state) -> None:
    # host copies: orbax would otherwise compile a slicing program per array for replicated shards
    mngr.save(step_of(state), args=ocp.args.StandardSave(jax.device_get(state)), force=True)
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None):
    """The state at `step` (default: the latest); `abstract_state` gives structure and shardings."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise SandboxError(f"no checkpoint in {mngr.directory}: nothing to resume or load")
    if step not in mngr.all_steps():
        raise SandboxError(f"no checkpoint at step {step} in {mngr.directory}; saved steps: {sorted(mngr.all_steps())}")
    # compare shapes first: a restore that fails half-way leaves orbax's reads dangling
    meta = ocp.PyTreeCheckpointHandler().metadata(Path(mngr.directory) / str(step) / "default")
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


def load_config(run_dir: str | Path) -> config_lib.Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise SandboxError(f"{run_dir} is not a run folder: it has no config.yaml")
    return config_lib.load(path)


def load_run(run_dir: str | Path, step: int | None = None, seed_index: int = 0):
    """(cfg, params, step) of a run folder's checkpoint (default: the latest).

    For a run of several seeds trained at once, `seed_index` picks one of them.
    """
    from sandbox.train.step import init_state, seed_keys

    cfg = load_config(run_dir)
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    keys, _ = seed_keys(cfg.train.seed, cfg.train.num_seeds)
    init = jax.vmap(lambda k: init_state(k, cfg, optimizer)) if cfg.train.num_seeds > 1 else (
        lambda ks: init_state(ks[0], cfg, optimizer))
    abstract = jax.eval_shape(init, keys)
    with manager(run_dir) as mngr:
        state = restore(mngr, abstract, step)
    params = jax.tree.map(lambda x: x.astype(np.promote_types(x.dtype, np.float32)), state.params)  # bf16/fp16 runs
    if cfg.train.num_seeds > 1:
        if not 0 <= seed_index < cfg.train.num_seeds:
            raise SandboxError(f"seed_index {seed_index} out of range: the run has {cfg.train.num_seeds} seeds")
        params = jax.tree.map(lambda x: x[seed_index], params)
    return cfg, params, step_of(state)
