"""Sharpness while training: the top Hessian eigenvalue of the train loss every N steps.

Measured on one fixed train batch so the curve shows the loss surface changing, not the batch.
With `train.sharpness_preconditioned`, also lambda_max(P^-1/2 H P^-1/2) for the optimizer's own
diagonal preconditioner P (Adam's sqrt(nu_hat) + eps, ...), which it reads from its state
(`optim.preconditioner`).
"""

import jax
import numpy as np

from sandbox import curvature, optim
from sandbox.errors import SandboxError
from sandbox.text.data import get_batch
from sandbox.train import precision
from sandbox.train.step import loss_fn_for


def check(cfg) -> None:
    """Raise unless the optimizer of `cfg` has the preconditioner `train.sharpness_preconditioned` reads."""
    if cfg.train.sharpness_preconditioned and not optim.has_preconditioner(cfg.optimizer.name):
        raise SandboxError(
            f"train.sharpness_preconditioned needs an optimizer with a diagonal preconditioner "
            f"({', '.join(optim.PRECONDITIONERS)}); optimizer {cfg.optimizer.name!r} has none"
        )


def make_sharpness(cfg, num_seeds: int):
    """sharpness(state, train_ids, data_key) -> {"sharpness": ..., ["preconditioned_sharpness": ...]}."""
    check(cfg)
    loss_fn = loss_fn_for(cfg)
    key = jax.random.PRNGKey(cfg.train.seed + 20_000)
    opt_name, opt_args = cfg.optimizer.name, cfg.optimizer.args

    def one(state, ids_N):
        batch = get_batch(ids_N, key, cfg.train.batch_size, cfg.model.seq_len)
        params = precision.at_least_float32(state.params)  # bf16/fp16
        out = {"sharpness": curvature.sharpness(loss_fn, params, batch, key)}
        if cfg.train.sharpness_preconditioned:
            precond = optim.preconditioner(opt_name, opt_args, state.opt_state)
            out["preconditioned_sharpness"] = curvature.preconditioned_sharpness(
                loss_fn, params, batch, key, precond)
        return out

    fn = jax.jit(jax.vmap(one, in_axes=(0, None)) if num_seeds > 1 else one)

    def sharpness(state, ids_N, data_key) -> dict:
        out = jax.device_get(fn(state, ids_N))
        row = {}
        for name, value in out.items():
            value = np.asarray(value, dtype=np.float64)
            row[name] = float(value.mean())
            if value.size > 1:
                row[f"{name}_std"] = float(value.std())
        return row

    return sharpness
