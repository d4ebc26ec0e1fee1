"""Sharpness: the top Hessian eigenvalue, plain and under a diagonal preconditioner.

Plain: lambda_max(H) of L at the current params, by Lanczos (gradient descent with step size eta
is stable on a quadratic iff lambda_max < 2/eta: the edge of stability). Preconditioned:
lambda_max(P^-1/2 H P^-1/2) for the diagonal P a method divides its step by (`optim.preconditioner`).
For Adam, P = sqrt(nu_hat) + eps and this effective curvature hovers at
(2 + 2 b1) / ((1 - b1) eta) = 38/eta for b1 = 0.9 (Cohen et al., 2022, "Adaptive gradient methods
at the edge of stability"). Both are traceable, so a training step under `jit` can call them every N steps.
"""

import jax
import jax.numpy as jnp

from sandbox.curvature.lanczos import ritz_pairs
from sandbox.curvature.operators import hessian


def sharpness(loss_fn, params, batch, key: jax.Array, num_steps: int = 20) -> jax.Array:
    """lambda_max of the Hessian of loss_fn(params, batch) by `num_steps` Lanczos steps."""
    op = hessian(loss_fn, params, batch)
    return ritz_pairs(op, key, 1, min(num_steps, op.dim), "top").values_K[0]


def preconditioned_sharpness(loss_fn, params, batch, key: jax.Array, precond,
                             num_steps: int = 20) -> jax.Array:
    """lambda_max(P^-1/2 H P^-1/2) by `num_steps` Lanczos steps, P = diag(precond), `precond` a
    positive pytree like params (e.g. Adam's sqrt(nu_hat) + eps from `optim.preconditioner`)."""
    op = hessian(loss_fn, params, batch)
    d_N = 1 / jnp.sqrt(op.ravel(precond))
    return ritz_pairs(op.scaled(d_N), key, 1, min(num_steps, op.dim), "top").values_K[0]
