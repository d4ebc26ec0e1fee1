"""Precision policies for training: which dtype holds the weights, which one computes, and how updates round.

A policy names (param dtype, compute dtype), as jmp's policies do; the model's softmax and loss
already run in promote(dtype, float32), so the output (loss) is float32 under every policy:

  fp32        float32 weights, float32 compute
  bf16, fp16  weights stored in the low format ("pure" low precision), compute in it too
  mixed_bf16, mixed_fp16   float32 master weights, cast to the low format for the forward/backward pass

The optimizer state is float32 under every policy, so what differs is the gradient's format and how the
weights round. fp16's narrow range makes small gradients underflow (|g| < 6e-8 is 0, < 6e-5 subnormal):
dynamic loss scaling multiplies the loss by S before differentiating and divides the float32 gradient by
S after; a step whose gradient is not finite is skipped and S halved; after `loss_scale_period` good steps
S doubles. A loss-scaled run also logs `grad_underflow_fraction_unscaled`: the fraction of its float32
gradient's entries (times C) below the smallest normal, i.e. what the backward pass would lose without S.
`static_loss_scale` C multiplies the loss as well (the backward pass sees C·S·L): C > 1 is static loss
scaling; C < 1 gives the low-precision backward pass the smaller gradients of a batch 1/C times larger
(a mean over more tokens) while the float32 gradient the optimizer gets is unchanged.
Low-precision weights take w <- round(w + dw) with `update_rounding`: nearest (updates below ulp(w)/2
vanish), stochastic (unbiased: E[w'] = w + dw, key from the data key and the step, so resuming is exact)
or kahan (a compensation buffer in the weights' format carries the lost low bits).
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sandbox.numerics import rounding

DTYPES = {"fp32": (jnp.float32, jnp.float32), "bf16": (jnp.bfloat16, jnp.bfloat16),
          "fp16": (jnp.float16, jnp.float16), "mixed_bf16": (jnp.float32, jnp.bfloat16),
          "mixed_fp16": (jnp.float32, jnp.float16)}
INITIAL_LOSS_SCALE = 2.0**15


@dataclass(frozen=True)
class Policy:
    name: str
    param_dtype: object
    compute_dtype: object
    rounding: str  # nearest | stochastic | kahan, for low-precision weights
    loss_scaling: bool
    period: int
    static_scale: float = 1.0

    @property
    def low_params(self) -> bool:
        return self.param_dtype != jnp.float32


def policy(tc) -> Policy:
    """The policy of a `TrainConfig` (train.precision, update_rounding, loss_scaling, loss_scale_period,
    static_loss_scale)."""
    param, compute = DTYPES[tc.precision]
    scaling = tc.loss_scaling == "dynamic" and compute == jnp.float16
    return Policy(tc.precision, param, compute, tc.update_rounding, scaling, tc.loss_scale_period,
                  tc.static_loss_scale)


def cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def at_least_float32(tree):
    """float32 copies of bf16/fp16 leaves (the analysis tools, LAPACK and Lanczos, need them); others as they are."""
    return jax.tree.map(lambda x: x.astype(np.promote_types(x.dtype, np.float32)), tree)


def init(params32, p: Policy):
    """(params in the param dtype, the policy's own state or None): loss scale, skipped steps, Kahan buffer."""
    extra = {}
    if p.compute_dtype == jnp.float16:
        extra["skipped_steps"] = jnp.zeros((), jnp.int32)
    if p.loss_scaling:
        extra.update(loss_scale=jnp.asarray(INITIAL_LOSS_SCALE, jnp.float32), good_steps=jnp.zeros((), jnp.int32))
    if p.low_params and p.rounding == "kahan":
        extra["kahan"] = jax.tree.map(lambda x: jnp.zeros(x.shape, p.param_dtype), params32)
    return cast(params32, p.param_dtype), (extra or None)


def underflow_fraction(grads, dtype) -> jax.Array:
    """Fraction of gradient entries that are zero or subnormal (|g| < smallest normal) in `dtype`."""
    tiny = float(jnp.finfo(dtype).smallest_normal)
    leaves = jax.tree.leaves(grads)
    small = sum(jnp.sum(jnp.abs(g.astype(jnp.float32)) < tiny) for g in leaves)
    return small / sum(g.size for g in leaves)


def zero_fraction(grads) -> jax.Array:
    """Fraction of gradient entries that are exactly zero (in fp16: |g| below half the smallest subnormal)."""
    leaves = jax.tree.leaves(grads)
    return sum(jnp.sum(g == 0) for g in leaves) / sum(g.size for g in leaves)


def value_and_grad(loss_fn, params, batch, extra, p: Policy):
    """(loss, float32 grads, all-finite flag, metrics) of loss_fn at the params cast to the compute dtype."""
    if p.name == "fp32":
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        return loss, grads, jnp.asarray(True), {}
    scale = (extra["loss_scale"] if p.loss_scaling else jnp.float32(1.0)) * p.static_scale
    loss, g = jax.value_and_grad(lambda q: loss_fn(q, batch).astype(jnp.float32) * scale)(cast(params, p.compute_dtype))
    grads = jax.tree.map(lambda x: x.astype(jnp.float32) / scale, g)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(grads)]))
    metrics = {"grad_underflow_fraction": underflow_fraction(g, p.compute_dtype),
               "grad_zero_fraction": zero_fraction(g)}
    if p.loss_scaling:  # what the dynamic scale saves: entries of C·g (no S) below the smallest normal
        metrics["grad_underflow_fraction_unscaled"] = underflow_fraction(
            jax.tree.map(lambda x: x * p.static_scale, grads), p.compute_dtype)
    return loss / scale, grads, finite, metrics


def apply_updates(params, updates, extra, key, p: Policy):
    """(new params, new extra) after w <- w + dw, rounded into the param dtype per the policy."""
    if not p.low_params:
        return optax.apply_updates(params, updates), extra
    if p.rounding == "nearest":
        return jax.tree.map(lambda w, u: (w.astype(jnp.float32) + u).astype(p.param_dtype), params, updates), extra
    if p.rounding == "stochastic":
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        new = [rounding.round_stochastic(k, w.astype(jnp.float32) + u, p.param_dtype)
               for k, w, u in zip(keys, leaves, tree.flatten_up_to(updates))]
        return tree.unflatten(new), extra
    pairs = jax.tree.map(lambda w, c, u: rounding.kahan_add(w, c, u.astype(p.param_dtype)),
                         params, extra["kahan"], updates)
    is_pair = lambda x: isinstance(x, tuple)
    new = jax.tree.map(lambda t: t[0], pairs, is_leaf=is_pair)
    return new, {**extra, "kahan": jax.tree.map(lambda t: t[1], pairs, is_leaf=is_pair)}


def finish(finite, old, new, p: Policy):
    """The (params, opt_state, extra) to keep: `old` on a step with non-finite gradients (fp16 policies
    skip it), else `new`; then the skipped-step count and the dynamic loss scale move."""
    extra = new[2]
    if extra is None or "skipped_steps" not in extra:
        return new
    params, opt_state, extra = jax.tree.map(lambda a, b: jnp.where(finite, b, a), old, new)
    extra = {**extra, "skipped_steps": extra["skipped_steps"] + (~finite).astype(jnp.int32)}
    if p.loss_scaling:
        good = jnp.where(finite, extra["good_steps"] + 1, 0)
        grow = good >= p.period
        scale = jnp.where(finite, jnp.where(grow, extra["loss_scale"] * 2, extra["loss_scale"]),
                          jnp.maximum(extra["loss_scale"] / 2, 1.0))
        extra = {**extra, "loss_scale": scale, "good_steps": jnp.where(grow, 0, good)}
    return params, opt_state, extra


def metrics(extra) -> dict:
    """The policy's state as metrics: loss scale and skipped steps so far."""
    if extra is None:
        return {}
    return {k: extra[k] for k in ("loss_scale", "skipped_steps") if k in extra}


def state_bytes(tree) -> int:
    """Bytes held by the arrays of a pytree (params, optimizer state, ...)."""
    return int(sum(np.dtype(x.dtype).itemsize * x.size for x in jax.tree.leaves(tree)))
