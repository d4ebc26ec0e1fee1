"""The training loop: jitted steps, periodic evaluation, metrics, checkpoints, progress.

Everything the loop does is decided by the config; its only state is the `TrainState` on
device and the files in the run folder, so `resume=True` continues a run exactly. The steps
between two points where the loop looks (log, eval, checkpoint, sharpness) run as scanned
calls of `step.scan_length` steps each (`step.scan_steps`, state donated): one compiled program,
one host sync per logged row.
"""

import time
from pathlib import Path

import jax
import numpy as np

from sandbox import optim
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.text.data import Dataset, as_device
from sandbox.train import checkpoint, distributed, objective, records
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


def train(cfg: config_lib.Config, run_dir: Path, data: Dataset, resume: bool = False, progress: bool = True) -> dict:
    """Train per `cfg`, writing metrics, checkpoints, figures and summary.json into `run_dir`."""
    tc, n = cfg.train, cfg.train.num_seeds
    mesh = mesh_lib.make_mesh(tc.num_devices, tc.batch_size, tc.sharding, tc.model_parallel)
    optimizer = optim.build(cfg.optimizer, tc.steps)
    param_keys, data_keys = seed_keys(tc.seed, n)
    data_key = data_keys if n > 1 else data_keys[0]
    init = (jax.vmap(lambda k: init_state(k, cfg, optimizer)) if n > 1
            else (lambda ks: init_state(ks[0], cfg, optimizer)))
    rep = mesh_lib.replicated(mesh)
    placed = mesh_lib.state_shardings(jax.eval_shape(init, param_keys), mesh, tc.sharding, lead=int(n > 1))
    evaluate = jax.jit(_seeded(make_eval(cfg, mesh_lib.batch_sharded(mesh)), n, (0, 0)))
    sharpness = make_sharpness(cfg, n) if tc.sharpness_every else None
    train_ids = jax.device_put(as_device(data.train_N), rep)
    eval_name, eval_batches = objective.training_eval_sets(cfg, data.val_N)  # every val loss is measured on it
    eval_batches = jax.device_put(eval_batches, rep)

    primary = distributed.is_primary()  # process 0 writes the run's files; checkpoints are saved by all
    mngr = checkpoint.manager(run_dir, tc.keep_checkpoints, writer=True)  # every process: orbax syncs them
    if resume:
        abstract = jax.tree.map(lambda s, where: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=where),
                                jax.eval_shape(init, param_keys), placed)
        state = checkpoint.restore(mngr, abstract, retry=f"continue from it with `sandbox train --resume {run_dir} "
                                   "--from-step {step}`")
    else:
        state = jax.jit(init, out_shardings=placed)(param_keys)  # fresh buffers, safe to donate
    start = checkpoint.step_of(state)
    per_device = mesh_lib.state_bytes_per_device(state, placed)
    log = records.MetricsLog(run_dir / "metrics.jsonl" if primary else None, resume_step=start if resume else None)
    tokens_per_step = tc.batch_size * cfg.model.seq_len * n

    wall0, pending, speeds, s = time.perf_counter(), [], [], start
    chunk = scan_length(tc, start)
    step = _seeded(make_train_step(cfg, optimizer, mesh_lib.batch_sharded(mesh)), n, (0, None, 0))
    step_fn = jax.jit(scan_steps(mesh_lib.keep_placed(step, placed), chunk), donate_argnums=0)
    step_fn = step_fn.lower(state, train_ids, data_key).compile()  # compile now: time only the steps
    try:
        with Reporter(tc.steps, start, progress) as report:
            report.say(mesh_lib.describe(mesh, tc.sharding, per_device))
            if resume:
                report.say(f"resuming {run_dir} from its checkpoint at step {start}, to step {tc.steps}")
            t0 = time.perf_counter()
            for s in range(start + chunk, tc.steps + 1, chunk):
                state, metrics = step_fn(state, train_ids, data_key)  # steps s - chunk + 1 .. s
                pending.append(metrics)
                logging, evaluating = s % tc.log_every == 0, s % tc.eval_every == 0 or s == tc.steps
                saving = s % tc.checkpoint_every == 0 or s == tc.steps
                measuring = bool(tc.sharpness_every) and s % tc.sharpness_every == 0
                if not (logging or evaluating or saving or measuring):
                    continue
                # the only host sync, once per logged step: each metric over the steps since the last, in order
                got = {k: np.concatenate([np.asarray(m[k]) for m in jax.device_get(pending)]) for k in pending[0]}
                losses, last = got["train_loss"], {k: v[-1] for k, v in got.items()}
                speed = tokens_per_step * len(losses) / (time.perf_counter() - t0)
                finite = np.isfinite(losses.reshape(len(losses), -1)).all(axis=1)  # per step, every seed
                if not finite.all():  # named by the first step whose loss was not finite
                    raise _diverged(s - len(losses) + 1 + int(np.argmin(finite)), run_dir, "the loss")
                row = {"step": s, **_stats(losses.mean(axis=0), "train_loss"),
                       **_stats(last["grad_norm"], "grad_norm"),
                       "learning_rate": float(np.asarray(last["learning_rate"]).reshape(-1)[0]),
                       "tokens_per_second": speed}
                speeds.append(speed)
                row.update({k: float(np.mean(v)) for k, v in last.items() if k not in row})  # precision metrics
                if evaluating:
                    val = np.asarray(evaluate(state.params, eval_batches))
                    if not np.isfinite(val).all():
                        raise _diverged(s, run_dir, "the val loss")
                    row.update(_stats(val, "val_loss"))
                if measuring:
                    row.update(sharpness(state, train_ids, data_key))
                # the row before the checkpoint: a run killed just after saving step s still has row s, and a
                # resume drops the rows after the checkpoint it continues from: no row is ever lost or doubled
                log.write(row)
                if saving:
                    try:
                        checkpoint.save(mngr, state)
                    except checkpoint.NonFinite as e:
                        raise _diverged(s, run_dir, "the train state", str(e)) from None
                report.update(s, row, plain=logging or evaluating)
                pending, t0 = [], time.perf_counter()
    except KeyboardInterrupt:
        kept = checkpoint.newest_intact(run_dir)
        where = (f"its last checkpoint is step {kept}: continue with `sandbox train --resume {run_dir}`"
                 if kept is not None else "no checkpoint had been saved yet")
        raise KeyboardInterrupt(f"training was interrupted after step {s}; {where}") from None
    finally:
        log.close()
        mngr.close()

    rows = records.read_metrics(run_dir / "metrics.jsonl") if primary else log.rows
    if primary:
        plot_loss(rows, run_dir / "figures" / "loss.png", data.entropy_rate, eval_name)
    last_train = next((r for r in reversed(rows) if "train_loss" in r), {})
    last_val = next((r for r in reversed(rows) if "val_loss" in r), {})
    summary = {
        "steps": tc.steps,
        "final_train_loss": last_train.get("train_loss"),
        "final_val_loss": last_val.get("val_loss"),
        "eval_set": eval_name,
        "tokens_per_second": float(np.median(speeds)) if speeds else None,
        "num_params": transformer.num_params(cfg.model),
        "wall_seconds": time.perf_counter() - wall0,
        "num_seeds": n,
        "num_devices": mesh.size,
        "sharding": tc.sharding,
        **{f"{k}_bytes_per_device": v for k, v in per_device.items()},
        "run_dir": str(run_dir),
    }
    if n > 1:
        summary["final_val_loss_std"] = last_val.get("val_loss_std")
    if data.entropy_rate is not None:
        summary["entropy_rate"] = data.entropy_rate
    if primary:
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
