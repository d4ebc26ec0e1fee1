"""The training loop: jitted steps, periodic evaluation, metrics, checkpoints, progress.

Everything the loop does is decided by the config; its only state is the `TrainState` on
device and the files in the run folder, so `resume=True` continues a run exactly.
"""

import time
from pathlib import Path

import jax
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sandbox import config as config_lib
from sandbox import optim
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.text.data import Dataset, as_device
from sandbox.train import checkpoint, objective, records
from sandbox.train import mesh as mesh_lib
from sandbox.train.figures import plot_loss
from sandbox.train.sharpness import make_sharpness
from sandbox.train.step import init_state, make_eval, make_train_step, seed_keys


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
    mesh = mesh_lib.make_mesh(tc.num_devices, tc.batch_size)
    optimizer = optim.build(cfg.optimizer, tc.steps)
    param_keys, data_keys = seed_keys(tc.seed, n)
    data_key = data_keys if n > 1 else data_keys[0]
    init = jax.vmap(lambda k: init_state(k, cfg, optimizer)) if n > 1 else (lambda ks: init_state(ks[0], cfg, optimizer))
    rep = mesh_lib.replicated(mesh)
    step_fn = jax.jit(_seeded(make_train_step(cfg, optimizer, mesh_lib.batch_sharded(mesh)), n, (0, None, 0)),
                      donate_argnums=0)
    evaluate = jax.jit(_seeded(make_eval(cfg, mesh_lib.batch_sharded(mesh)), n, (0, 0)))
    sharpness = make_sharpness(cfg, n) if tc.sharpness_every else None
    train_ids = jax.device_put(as_device(data.train_N), rep)
    eval_name, eval_batches = objective.training_eval_sets(cfg, data.val_N)  # every val loss is measured on it
    eval_batches = jax.device_put(eval_batches, rep)

    mngr = checkpoint.manager(run_dir, tc.keep_checkpoints)
    if resume:
        abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
                                jax.eval_shape(init, param_keys))
        state = checkpoint.restore(mngr, abstract)
        # the base learning rate lives in the optimizer state: a resumed run takes the config's
        set_lr = _seeded(lambda o: optim.set_learning_rate(o, cfg.optimizer.learning_rate), n, 0)
        state = state.replace(opt_state=set_lr(state.opt_state))
    else:
        state = jax.jit(init, out_shardings=rep)(param_keys)  # fresh buffers, safe to donate
    start = checkpoint.step_of(state)
    log = records.MetricsLog(run_dir / "metrics.jsonl", resume_step=start if resume else None)
    tokens_per_step = tc.batch_size * cfg.model.seq_len * n

    wall0, pending, speeds = time.perf_counter(), [], []
    step_fn = step_fn.lower(state, train_ids, data_key).compile()  # compile now: time only the steps
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}")]
    try:
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("train", total=tc.steps, completed=start, info="")
            t0 = time.perf_counter()
            for s in range(start + 1, tc.steps + 1):
                state, metrics = step_fn(state, train_ids, data_key)
                pending.append(metrics)
                evaluating = s % tc.eval_every == 0 or s == tc.steps
                saving = s % tc.checkpoint_every == 0 or s == tc.steps
                if s % tc.log_every and not evaluating and not saving:
                    continue
                got = jax.device_get(pending)  # the only host sync: once per logged step
                speed = tokens_per_step * len(got) / (time.perf_counter() - t0)
                losses = np.stack([np.asarray(m["train_loss"]) for m in got])
                if not np.isfinite(losses).all():
                    raise _diverged(s, mngr, run_dir)
                row = {"step": s, **_stats(losses.mean(axis=0), "train_loss"),
                       **_stats(got[-1]["grad_norm"], "grad_norm"),
                       "learning_rate": float(np.asarray(got[-1]["learning_rate"]).reshape(-1)[0]),
                       "tokens_per_second": speed}
                speeds.append(speed)
                if evaluating:
                    val = np.asarray(evaluate(state.params, eval_batches))
                    if not np.isfinite(val).all():
                        raise _diverged(s, mngr, run_dir)
                    row.update(_stats(val, "val_loss"))
                if sharpness is not None and s % tc.sharpness_every == 0:
                    row.update(sharpness(state, train_ids, data_key))
                log.write(row)
                if saving:
                    checkpoint.save(mngr, state)
                info = f"loss {row['train_loss']:.3f}" + (f"  val {row['val_loss']:.3f}" if evaluating else "")
                bar.update(task, completed=s, info=info)
                pending, t0 = [], time.perf_counter()
    finally:
        log.close()
        mngr.close()

    rows = records.read_metrics(run_dir / "metrics.jsonl")
    plot_loss(rows, run_dir / "figures" / "loss.png", data.entropy_rate)
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
        "run_dir": str(run_dir),
    }
    if n > 1:
        summary["final_val_loss_std"] = last_val.get("val_loss_std")
    if data.entropy_rate is not None:
        summary["entropy_rate"] = data.entropy_rate
    records.write_json(run_dir / "summary.json", summary)
    return summary


def _diverged(step: int, mngr, run_dir: Path) -> SandboxError:
    kept = mngr.latest_step()
    where = f"the last good checkpoint (step {kept}) is kept in {run_dir}/checkpoints" if kept is not None \
        else "no checkpoint had been saved yet"
    return SandboxError(
        f"the loss became NaN or infinite by step {step}; training stopped and {where}. "
        "Try a smaller optimizer.learning_rate or gradient clipping (optimizer.clip_norm)."
    )
