"""Sharpness while training: the top Hessian eigenvalue of the train loss every N steps.

Measured on one fixed train batch so the curve shows the loss surface changing, not the batch.
With `train.sharpness_preconditioned`, also lambda_max(P^-1/2 H P^-1/2) for Adam's
preconditioner P = sqrt(nu_hat) + eps, read from the optimizer state.
"""

import jax
import numpy as np

from sandbox import curvature
from sandbox.errors import SandboxError
from sandbox.text.data import get_batch
from sandbox.train.step import loss_fn_for


def _adam_moments(opt_state):
    """The first optimizer-state node carrying Adam's second moment `nu` and step `count`."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "nu")) if hasattr(s, "nu")]
    if not found:
        raise SandboxError("train.sharpness_preconditioned needs an Adam-type optimizer (its state has no `nu`)")
    return found[0]


def make_sharpness(cfg, num_seeds: int):
    """sharpness(state, train_ids, data_key) -> {"sharpness": ..., ["preconditioned_sharpness": ...]}."""
    loss_fn = loss_fn_for(cfg)
    key = jax.random.PRNGKey(cfg.train.seed + 20_000)
    args = cfg.optimizer.args

    def one(state, ids_N):
        batch = get_batch(ids_N, key, cfg.train.batch_size, cfg.model.seq_len)
        params = jax.tree.map(lambda x: x.astype(np.promote_types(x.dtype, np.float32)), state.params)  # bf16/fp16
        out = {"sharpness": curvature.sharpness(loss_fn, params, batch, key)}
        if cfg.train.sharpness_preconditioned:
            adam = _adam_moments(state.opt_state)
            out["preconditioned_sharpness"] = curvature.preconditioned_sharpness(
                loss_fn, params, batch, key, adam.nu, eps=args.get("eps", 1e-8),
                b2=args.get("b2", 0.999), count=adam.count)
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
