"""Randomized trace and diagonal: Hutchinson and Hutch++.

Hutchinson: tr A = E[z^T A z] for Rademacher z; m probes have variance
2(||A||_F^2 - sum_i A_ii^2)/m. Hutch++ (Meyer, Musco, Musco & Woodruff, 2021) spends m/3 matvecs
on a sketch Q = orth(A S), takes tr(Q^T A Q) exactly (m/3 more) and Hutchinson on the deflated
rest (I - QQ^T) A (I - QQ^T) (last m/3): error O(1/m) instead of O(1/sqrt(m)), and exact when the
sketch covers the whole space (m >= 3N). Diagonal: diag A = E[z * A z] (Bekas et al., 2007).
Matvecs over probes run `batch_size` at a time (`linop.map_rows`; default one on CPU), bounding memory.
"""

import functools

import jax
import jax.numpy as jnp

from sandbox.curvature.linop import LinearOperator, ensure_finite, map_rows
from sandbox.errors import SandboxError

METHODS = ("hutch++", "hutchinson")


def trace(op: LinearOperator, *, key: jax.Array, num_matvecs: int = 99, method: str = "hutch++",
          batch_size: int | None = None) -> jax.Array:
    """Estimate tr A with `num_matvecs` matvecs by "hutch++" (default) or "hutchinson"."""
    if method not in METHODS:
        raise SandboxError(f"unknown trace method {method!r}; valid methods: {', '.join(METHODS)}")
    if num_matvecs < (3 if method == "hutch++" else 1):
        raise SandboxError(f"num_matvecs={num_matvecs} is too small for {method} "
                           f"(needs >= {3 if method == 'hutch++' else 1})")
    fn = hutchpp if method == "hutch++" else hutchinson
    return ensure_finite(fn(op, key, num_matvecs, batch_size), "the trace estimate")


def diagonal(op: LinearOperator, *, key: jax.Array, num_matvecs: int = 1, batch_size: int | None = None):
    """Hutchinson estimate of diag A, as a pytree shaped like the operator's parameters.

    Traceable: works inside `jit` (e.g. Sophia-H's Hessian diagonal from a closure loss).
    """
    return op.unravel(hutchinson_diagonal(op, key, num_matvecs, batch_size))


def _matmat(op, v_PxN, batch_size):
    """A v for each row (`map_rows`: chunks of `batch_size`, vmapped)."""
    return map_rows(op.mv, v_PxN, batch_size)


@functools.partial(jax.jit, static_argnames=("num_matvecs", "batch_size"))
def hutchinson(op, key, num_matvecs: int, batch_size: int | None = None):
    """tr A by Hutchinson with `num_matvecs` Rademacher probes: traceable, unchecked (see `trace`)."""
    op = op.linearized()  # the pass at w once, not once per chunk of probes
    z_PxN = jax.random.rademacher(key, (num_matvecs, op.dim), op.dtype)
    return jnp.mean(jnp.sum(z_PxN * _matmat(op, z_PxN, batch_size), axis=1))


@functools.partial(jax.jit, static_argnames=("num_matvecs", "batch_size"))
def hutchinson_diagonal(op, key, num_matvecs: int, batch_size: int | None = None):
    """diag A (flat) by E[z * A z] over `num_matvecs` Rademacher probes: traceable, unchecked."""
    op = op.linearized()
    z_PxN = jax.random.rademacher(key, (num_matvecs, op.dim), op.dtype)
    return jnp.mean(z_PxN * _matmat(op, z_PxN, batch_size), axis=0)


@functools.partial(jax.jit, static_argnames=("num_matvecs", "batch_size"))
def hutchpp(op, key, num_matvecs: int, batch_size: int | None = None):
    """tr A by Hutch++ with `num_matvecs` matvecs: traceable, unchecked (see `trace`)."""
    op = op.linearized()
    n = op.dim
    r = min(num_matvecs // 3, n)                # sketch size
    g = num_matvecs - 2 * r                     # probes for the deflated remainder
    key_s, key_g = jax.random.split(key)
    s_RxN = jax.random.rademacher(key_s, (r, n), op.dtype)
    q_NxR, _ = jnp.linalg.qr(_matmat(op, s_RxN, batch_size).T)
    if g == 0 or r == n:
        return jnp.sum(q_NxR.T * _matmat(op, q_NxR.T, batch_size))
    z_GxN = jax.random.rademacher(key_g, (g, n), op.dtype)
    z_GxN = z_GxN - (z_GxN @ q_NxR) @ q_NxR.T
    both_PxN = jnp.concatenate([q_NxR.T, z_GxN])  # one batched pass (one compiled matvec) for both parts
    a_both_PxN = _matmat(op, both_PxN, batch_size)
    exact = jnp.sum(q_NxR.T * a_both_PxN[:r])
    rest = jnp.sum(z_GxN * a_both_PxN[r:]) / g
    return exact + rest
