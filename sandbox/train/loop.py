"""The training loop: jitted steps, periodic evaluation, metrics, checkpoints, progress.

Everything the loop does is decided by the config; its only state is the `TrainState` on
device and the files in the run folder, so `resume=True` continues a run exactly. The steps
between two points where the loop looks (log, eval, checkpoint, sharpness) run as scanned
calls of `step.scan_length` steps each (`step.scan_steps`, state donated): one compiled program,
one host sync per logged row. `train` reads top to bottom as its parts: `build` the programs,
`initial_state`, `run_steps` (which calls `look` at each of those points), `summarize`.
SIGINT and SIGTERM stop it at the next point it looks, with a verified checkpoint there (`interrupts`).
"""

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from sandbox import optim
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.text.data import Dataset, as_device
from sandbox.train import checkpoint, distributed, events, interrupts, objective, records
from sandbox.train import config as config_lib
from sandbox.train import mesh as mesh_lib
from sandbox.train.figures import plot_loss
from sandbox.train.progress import Reporter
from sandbox.train.sharpness import make_sharpness
from sandbox.train.step import init_state, make_eval, make_train_step, scan_length, scan_steps, seed_keys


def _seeded(fn, num_seeds: int, in_axes):
    """fn itself for one seed; vmapped over the leading seed axis for several."""
    return jax.vmap(fn, in_axes=in_axes) if num_seeds > 1 else fn


def _stats(values, prefix: str) -> dict:
    """{prefix: mean} for one seed; mean and spread (std) across seeds for several."""
    values = np.asarray(values, dtype=np.float64)
    row = {prefix: float(values.mean())}
    if values.ndim and values.size > 1:
        row[f"{prefix}_std"] = float(values.std())
    return row


@dataclasses.dataclass
class Parts:
    """What one run computes with, built once from its config: the mesh, the programs and their inputs."""
    cfg: config_lib.Config
    mesh: object
    optimizer: object
    init: object           # param keys -> a fresh (stacked) TrainState
    param_keys: jax.Array
    data_key: jax.Array
    placed: object         # the state's shardings
    evaluate: object       # (params, eval batches) -> val loss per seed
    sharpness: object      # (state, ids, data key) -> row entries, or None
    train_ids: jax.Array
    eval_name: str
    eval_batches: dict


def build(cfg: config_lib.Config, data: Dataset) -> Parts:
    """The mesh, the optimizer, the state's initializer and shardings, the eval and sharpness programs."""
    tc, n = cfg.train, cfg.train.num_seeds
    mesh = mesh_lib.make_mesh(tc.num_devices, tc.batch_size, tc.sharding, tc.model_parallel)
    optimizer = optim.build(cfg.optimizer, tc.steps)
    param_keys, data_keys = seed_keys(tc.seed, n)
    init = (jax.vmap(lambda k: init_state(k, cfg, optimizer)) if n > 1
            else (lambda ks: init_state(ks[0], cfg, optimizer)))
    rep = mesh_lib.replicated(mesh)
    eval_name, eval_batches = objective.training_eval_sets(cfg, data.val_N)  # every val loss is measured on it
    return Parts(
        cfg=cfg, mesh=mesh, optimizer=optimizer, init=init, param_keys=param_keys,
        data_key=data_keys if n > 1 else data_keys[0],
        placed=mesh_lib.state_shardings(jax.eval_shape(init, param_keys), mesh, tc.sharding, lead=int(n > 1)),
        evaluate=jax.jit(_seeded(make_eval(cfg, mesh_lib.batch_sharded(mesh)), n, (0, 0))),
        sharpness=make_sharpness(cfg, n) if tc.sharpness_every else None,
        train_ids=jax.device_put(as_device(data.train_N), rep), eval_name=eval_name,
        eval_batches=jax.device_put(eval_batches, rep))


def initial_state(parts: Parts, mngr, run_dir: Path, resume: bool):
    """A fresh state (new buffers, safe to donate), or the run's latest verified checkpoint."""
    if not resume:
        return jax.jit(parts.init, out_shardings=parts.placed)(parts.param_keys)
    abstract = jax.tree.map(lambda s, where: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=where),
                            jax.eval_shape(parts.init, parts.param_keys), parts.placed)
    return checkpoint.restore(mngr, abstract, retry=f"continue from it with `sandbox train --resume {run_dir} "
                              "--from-step {step}`")


def compile_steps(parts: Parts, state, chunk: int):
    """The compiled call that runs `chunk` steps (state donated), compiled now so that only steps are timed."""
    step = _seeded(make_train_step(parts.cfg, parts.optimizer, mesh_lib.batch_sharded(parts.mesh)),
                   parts.cfg.train.num_seeds, (0, None, 0))
    step_fn = jax.jit(scan_steps(mesh_lib.keep_placed(step, parts.placed), chunk), donate_argnums=0)
    return step_fn.lower(state, parts.train_ids, parts.data_key).compile()


def what_at(tc, s: int) -> dict:
    """What the loop does after step s: {"log", "eval", "save", "sharpness"} -> bool."""
    return {"log": s % tc.log_every == 0, "eval": s % tc.eval_every == 0 or s == tc.steps,
            "save": s % tc.checkpoint_every == 0 or s == tc.steps,
            "sharpness": bool(tc.sharpness_every) and s % tc.sharpness_every == 0}


def look(parts: Parts, state, pending: list, s: int, t0: float, todo: dict, run_dir: Path) -> dict:
    """The metrics row of step s: the steps since the last row (one host sync; their speed counted from `t0` to
    it), val loss, sharpness."""
    got = {k: np.concatenate([np.asarray(m[k]) for m in jax.device_get(pending)]) for k in pending[0]}
    seconds = time.perf_counter() - t0  # after the sync: the steps are done, not only dispatched
    losses, last = got["train_loss"], {k: v[-1] for k, v in got.items()}
    finite = np.isfinite(losses.reshape(len(losses), -1)).all(axis=1)  # per step, every seed
    if not finite.all():  # named by the first step whose loss was not finite
        raise _diverged(s - len(losses) + 1 + int(np.argmin(finite)), run_dir, "the loss")
    tokens = parts.cfg.train.batch_size * parts.cfg.model.seq_len * parts.cfg.train.num_seeds * len(losses)
    row = {"step": s, **_stats(losses.mean(axis=0), "train_loss"), **_stats(last["grad_norm"], "grad_norm"),
           "learning_rate": float(np.asarray(last["learning_rate"]).reshape(-1)[0]),
           "tokens_per_second": tokens / seconds}
    row.update({k: float(np.mean(v)) for k, v in last.items() if k not in row})  # precision metrics
    if todo["eval"]:
        val = np.asarray(parts.evaluate(state.params, parts.eval_batches))
        if not np.isfinite(val).all():
            raise _diverged(s, run_dir, "the val loss")
        row.update(_stats(val, "val_loss"))
    if todo["sharpness"]:
        row.update(parts.sharpness(state, parts.train_ids, parts.data_key))
    return row


def save(mngr, state, s: int, run_dir: Path) -> None:
    try:
        checkpoint.save(mngr, state)
    except checkpoint.NonFinite as e:
        raise _diverged(s, run_dir, "the train state", str(e)) from None


def run_steps(parts: Parts, state, step_fn, chunk: int, start: int, logs, mngr, report, stop,
              run_dir: Path) -> list:
    """Steps start+1 .. train.steps, looking at each log/eval/checkpoint/sharpness step; the speeds measured.

    After a first SIGINT/SIGTERM (`stop`) the next step the loop looks at is saved and the run stops there.
    """
    tc, speeds, pending = parts.cfg.train, [], []
    first_sharpness = next((s for s in range(start + chunk, tc.steps + 1, chunk) if what_at(tc, s)["sharpness"]), None)
    t0 = time.perf_counter()
    for s in range(start + chunk, tc.steps + 1, chunk):
        state, metrics = step_fn(state, parts.train_ids, parts.data_key)  # steps s - chunk + 1 .. s
        pending.append(metrics)
        todo = what_at(tc, s)
        if not any(todo.values()):
            continue
        if todo["sharpness"] and s == first_sharpness:  # seconds of compiling, once: say so rather than stall
            report.say(f"step {s}: measuring the sharpness lambda_max(H) (Lanczos; compiling it first) ...")
        row = look(parts, state, pending, s, t0, todo, run_dir)
        speeds.append(row["tokens_per_second"])
        # the row before the checkpoint: a run killed just after saving step s still has row s, and a
        # resume drops the rows after the checkpoint it continues from: no row is ever lost or doubled
        for log in logs:
            log.write(row)
        signum = stop.requested(s)
        if todo["save"] or signum:
            save(mngr, state, s, run_dir)
        report.update(s, row, plain=todo["log"] or todo["eval"])
        if signum:
            raise interrupts.stopped(signum, s, run_dir)
        pending, t0 = [], time.perf_counter()
    return speeds


def summarize(parts: Parts, rows: list, speeds: list, wall: float, per_device: dict, data: Dataset,
              run_dir: Path) -> dict:
    """summary.json: the last train and val losses (with their spread over seeds), speed, size, placement."""
    tc, n = parts.cfg.train, parts.cfg.train.num_seeds
    last_train = next((r for r in reversed(rows) if "train_loss" in r), {})
    last_val = next((r for r in reversed(rows) if "val_loss" in r), {})
    summary = {
        "steps": tc.steps,
        "final_train_loss": last_train.get("train_loss"),
        "final_val_loss": last_val.get("val_loss"),
        "eval_set": parts.eval_name,
        "tokens_per_second": float(np.median(speeds)) if speeds else None,
        "num_params": transformer.num_params(parts.cfg.model),
        "wall_seconds": wall,
        "num_seeds": n,
        "num_devices": parts.mesh.size,
        "sharding": tc.sharding,
        **{f"{k}_bytes_per_device": v for k, v in per_device.items()},
        "run_dir": str(run_dir),
    }
    if n > 1:
        summary["final_val_loss_std"] = last_val.get("val_loss_std")
    if data.entropy_rate is not None:
        summary["entropy_rate"] = data.entropy_rate
    return summary


def train(cfg: config_lib.Config, run_dir: Path, data: Dataset, resume: bool = False, progress: bool = True) -> dict:
    """Train per `cfg`, writing metrics, TensorBoard events, checkpoints, figures and summary.json into `run_dir`."""
    wall0 = time.perf_counter()
    parts = build(cfg, data)
    primary = distributed.is_primary()  # process 0 writes the run's files; checkpoints are saved by all
    mngr = checkpoint.manager(run_dir, cfg.train.keep_checkpoints, writer=True)  # every process: orbax syncs them
    state = initial_state(parts, mngr, run_dir, resume)
    start = checkpoint.step_of(state)
    per_device = mesh_lib.state_bytes_per_device(state, parts.placed)
    log = records.MetricsLog(run_dir / "metrics.jsonl" if primary else None, resume_step=start if resume else None)
    logs = [log, events.EventLog(run_dir, start if resume else None)] if primary else [log]
    chunk = scan_length(cfg.train, start)
    try:
        with interrupts.deferred() as stop, Reporter(cfg.train.steps, start, progress) as report:
            report.say(mesh_lib.describe(parts.mesh, cfg.train.sharding, per_device))
            if resume:
                report.say(f"resuming {run_dir} from its checkpoint at step {start}, to step {cfg.train.steps}")
            report.say(f"compiling the train step ({chunk} steps per call) ...")
            step_fn = compile_steps(parts, state, chunk)
            parts.evaluate = parts.evaluate.lower(state.params, parts.eval_batches).compile()  # not inside the ETA
            report.begin()
            speeds = run_steps(parts, state, step_fn, chunk, start, logs, mngr, report, stop, run_dir)
    except KeyboardInterrupt as e:  # a second signal, or Ctrl-C where no handler could be installed
        kept = checkpoint.newest_intact(run_dir)
        where = (f"its last checkpoint is step {kept}: continue with `sandbox train --resume {run_dir}`"
                 if kept is not None else "no checkpoint had been saved yet")
        if isinstance(e, interrupts.Aborted):
            raise interrupts.Aborted(f"{e}; {where}", e.exit_code - 128) from None
        if isinstance(e, interrupts.Interrupted):
            raise
        raise KeyboardInterrupt(f"training was interrupted; {where}") from None
    finally:
        for each in logs:
            each.close()
        mngr.close()

    rows = records.read_metrics(run_dir / "metrics.jsonl") if primary else log.rows
    summary = summarize(parts, rows, speeds, time.perf_counter() - wall0, per_device, data, run_dir)
    if primary:
        plot_loss(rows, run_dir / "figures" / "loss.png", data.entropy_rate, parts.eval_name)
        records.write_json(run_dir / "summary.json", summary)
    return summary


def _diverged(step: int, run_dir: Path, what: str, detail: str = "") -> SandboxError:
    kept = checkpoint.newest_intact(run_dir)
    where = f"the last good checkpoint (step {kept}) is kept in {run_dir}/checkpoints" if kept is not None \
        else "no checkpoint had been saved yet"
    detail = f" ({detail})" if detail else ""
    return SandboxError(
        f"{what} became NaN or infinite by step {step}{detail}; training stopped and {where}. "
        "Try a smaller optimizer.learning_rate or gradient clipping (optimizer.clip_norm)."
    )
