"""The GGN of softmax cross-entropy in closed form: G v = J^T H_z J v, H_z never formed.

For L(w) = (1/N) sum_i CE(softmax(z_i), y_i) with logits z = f(w) (N rows of V classes, classes
on the last axis), the Hessian of the loss in the logits is block diagonal, one V x V block per row,

    H_i = (diag(p_i) - p_i p_i^T) / N,     p_i = softmax(z_i),

and does not depend on the labels (nor on label smoothing, whose targets also sum to one). Applied
to u_i = (J v)_i it is (p_i * u_i - p_i (p_i . u_i)) / N: two elementwise products and one dot per
row, so a matvec costs one linearization of f (as a gradient step does) plus one N x V array for
J v, never a V x V matrix and no second derivative traced through the loss.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from sandbox.curvature.linop import LinearOperator
from sandbox.curvature.operators import from_rule, linearize


def softmax_hessian_vp(z_NxV: jax.Array, u_NxV: jax.Array) -> jax.Array:
    """H_z u for the mean softmax cross-entropy over the rows of z: (p * u - p (p . u)) / N per row."""
    p_NxV = jax.nn.softmax(z_NxV, axis=-1)
    num_rows = z_NxV.size // z_NxV.shape[-1]
    pu_N1 = jnp.sum(p_NxV * u_NxV, axis=-1, keepdims=True)
    return p_NxV * (u_NxV - pu_N1) / num_rows


def softmax_ggn(model_fn: Callable, params, batch) -> LinearOperator:
    """GGN J^T H_z J of the mean softmax cross-entropy of the logits `model_fn(params, batch)`.

    The labels are not needed (H_z does not depend on them); `batch` may be a list of batches,
    as for `curvature.ggn`. Equals `curvature.ggn(model_fn, mean_cross_entropy, ...)` exactly.
    """
    return from_rule(_SoftmaxGgn(model_fn), params, batch)


@dataclasses.dataclass(frozen=True)
class _SoftmaxGgn:
    model_fn: Callable

    def __call__(self, layout, flat, batch, v_N):
        z_NxV, jvp_fn, vjp_fn = linearize(self.model_fn, layout, flat, batch)
        return vjp_fn(softmax_hessian_vp(z_NxV, jvp_fn(v_N)))
