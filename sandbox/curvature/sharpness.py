"""Sharpness: the top Hessian eigenvalue, plain and under Adam's diagonal preconditioner.

Plain: lambda_max(H) of L at the current params, by Lanczos (gradient descent with step size eta
is stable on a quadratic iff lambda_max < 2/eta: the edge of stability). Preconditioned:
lambda_max(P^-1/2 H P^-1/2) with P = diag(sqrt(nu_hat) + eps), Adam's effective curvature, which
hovers at (2 + 2 b1) / ((1 - b1) eta) = 38/eta for b1 = 0.9 (Cohen et al., 2022, "Adaptive
gradient methods at the edge of stability"). Both are traceable, so a training step under `jit` can call them every N steps.
"""

import jax
import jax.numpy as jnp

from sandbox.curvature.lanczos import _eigenpairs
from sandbox.curvature.operators import hessian


def sharpness(loss_fn, params, batch, key: jax.Array, num_steps: int = 20) -> jax.Array:
    """lambda_max of the Hessian of loss_fn(params, batch) by `num_steps` Lanczos steps."""
    op = hessian(loss_fn, params, batch)
    return _eigenpairs(op, key, 1, min(num_steps, op.dim), "top").values_K[0]


def preconditioned_sharpness(loss_fn, params, batch, key: jax.Array, nu, *, eps: float = 1e-8,
                             b2: float | None = None, count=None,
                             num_steps: int = 20) -> jax.Array:
    """lambda_max(P^-1/2 H P^-1/2), P = sqrt(nu_hat) + eps, nu = Adam's second moment (a pytree
    like params). With b2 and count (Adam's step count), nu_hat = nu / (1 - b2^count)."""
    op = hessian(loss_fn, params, batch)
    nu_N = op.ravel(nu)
    if b2 is not None and count is not None:
        nu_N = nu_N / (1 - jnp.asarray(b2, op.dtype) ** count)
    d_N = 1 / jnp.sqrt(jnp.sqrt(nu_N) + eps)
    return _eigenpairs(op.scaled(d_N), key, 1, min(num_steps, op.dim), "top").values_K[0]
