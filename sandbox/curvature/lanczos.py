"""Lanczos with full reorthogonalization: extreme eigenpairs of a symmetric operator.

m steps build an orthonormal basis Q (m x N) of the Krylov space span{v, Av, ..., A^{m-1} v} and
the tridiagonal T = Q A Q^T (alphas on the diagonal, betas beside it). The eigenvalues of T (Ritz
values) converge first at the ends of the spectrum; Ritz vector y_j = Q^T s_j has residual
||A y_j - theta_j y_j|| = |beta_m s_j[m-1]|. Each new vector is orthogonalized twice, Gram-Schmidt
"twice is enough": first by the three-term recurrence w - alpha_i q_i - beta_{i-1} q_{i-1} (in exact
arithmetic already orthogonal to all of Q), then by one full pass against every previous vector,
which removes the rounding the first left behind; a third pass only where the full one removed more
than half of w's norm (Daniel, Gragg, Kaufman & Stewart, 1976). That keeps Q orthonormal to working
precision and avoids ghost eigenvalues, at two reads of Q per step instead of four. On breakdown
(beta ~ 0, an invariant subspace found) a fresh random vector orthogonal to Q continues the run, with
a zero coupling in T.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sandbox.curvature.eigh import eigh
from sandbox.curvature.linop import LinearOperator, ensure_finite
from sandbox.errors import SandboxError


class Tridiagonal(NamedTuple):
    alphas_M: jax.Array    # diagonal of T
    betas_M: jax.Array     # betas_M[i] couples step i to i+1; betas_M[-1] is the residual norm
    basis_MxN: jax.Array   # orthonormal Lanczos vectors, one per row


class Eigenpairs(NamedTuple):
    values_K: jax.Array     # sorted: descending for which="top", ascending for "bottom"
    vectors_KxN: jax.Array  # vectors_KxN[i] is the flat unit eigenvector of values_K[i]
    residuals_K: jax.Array  # ||A y - theta y|| for each pair


def lanczos(op: LinearOperator, v0_N: jax.Array, num_steps: int, mask_N: jax.Array | None = None) -> Tridiagonal:
    """Run `num_steps` Lanczos steps from the start vector v0 (normalized here); traceable, vmappable.

    With a 0/1 `mask_N` (for an operator that keeps its input and output on those coordinates, as
    `op.scaled(mask_N)` does) the run stays on the n_b = sum(mask) coordinates: start and restart
    vectors are masked, and once the block is exhausted (step >= n_b) every later step is inactive:
    a zero basis row, alpha = beta = 0 (see `curvature.blocks`).
    """
    n, m = op.dim, num_steps
    dtype = op.dtype
    tiny = jnp.finfo(dtype).eps * 10
    mask_N = jnp.ones((n,), dtype) if mask_N is None else mask_N.astype(dtype)
    num_active = jnp.sum(mask_N)
    v0_N = v0_N * mask_N
    q0_N = (v0_N / jnp.linalg.norm(v0_N)).astype(dtype)
    # Row m is scratch: the step after the last writes there, so every step writes row i + 1.
    basis0_MxN = jnp.zeros((m + 1, n), dtype).at[0].set(q0_N)
    # Restart directions after a breakdown: shifts of a fixed vector with irregular entries.
    restart_N = jnp.sin(jnp.arange(1, n + 1, dtype=dtype) * 12.9898) * 43758.5453 % 1 - 0.5

    def rare(v_N, basis_MxN, alpha, i):
        """Near breakdown (the full pass removed over half of w): the pass left rounding along Q of
        relative size eps ||w|| / beta, so once more (DGKS); if nothing is left, a restart direction."""
        v_N = v_N - (basis_MxN @ v_N) @ basis_MxN
        beta = jnp.linalg.norm(v_N)
        broke = beta <= tiny * jnp.maximum(jnp.abs(alpha), 1.0)
        fresh_N = mask_N * jnp.roll(restart_N, i)
        for _ in range(2):
            fresh_N = fresh_N - (basis_MxN @ fresh_N) @ basis_MxN
        fresh_N = fresh_N / (jnp.linalg.norm(fresh_N) + tiny)
        return jnp.where(broke, fresh_N, v_N / jnp.where(broke, 1, beta)), jnp.where(broke, 0.0, beta)

    def step(carry, i):
        basis_MxN, beta_prev = carry
        q_N = basis_MxN[i]
        w_N = op.mv(q_N)
        alpha = jnp.dot(q_N, w_N)
        w_N = w_N - alpha * q_N - beta_prev * basis_MxN[i - 1]  # row -1 (scratch) is zero until the end
        v_N = w_N - (basis_MxN @ w_N) @ basis_MxN  # one full pass (rows not yet filled are zero)
        beta = jnp.linalg.norm(v_N)
        near = (beta < 0.5 * jnp.linalg.norm(w_N)) | (beta <= tiny * jnp.maximum(jnp.abs(alpha), 1.0))
        nxt_N, beta = jax.lax.cond(near, lambda: rare(v_N, basis_MxN, alpha, i), lambda: (v_N / beta, beta))
        live = i + 1 < num_active  # the Krylov space has not yet filled the block
        return (basis_MxN.at[i + 1].set(jnp.where(live, nxt_N, 0.0)), beta), (alpha, jnp.where(live, beta, 0.0))

    (basis_MxN, _), (alphas_M, betas_M) = jax.lax.scan(step, (basis0_MxN, jnp.zeros((), dtype)), jnp.arange(m))
    return Tridiagonal(alphas_M, betas_M, basis_MxN[:m])


def tridiagonal_eigh(tri: Tridiagonal):
    """Ritz values (ascending) and the eigenvectors S (columns) of T (vmap-safe: `curvature.eigh`)."""
    t_MxM = (jnp.diag(tri.alphas_M) + jnp.diag(tri.betas_M[:-1], 1)
             + jnp.diag(tri.betas_M[:-1], -1))
    return eigh(t_MxM)


def eigenpairs(op: LinearOperator, k: int = 5, *, key: jax.Array, num_steps: int | None = None,
               which: str = "top") -> Eigenpairs:
    """The k largest ("top") or smallest ("bottom") eigenpairs by Lanczos, with residual norms.

    num_steps defaults to min(dim, max(2k + 20, 40)); more steps, more accuracy (m = dim is exact).
    """
    if which not in ("top", "bottom"):
        raise SandboxError(f"unknown which={which!r}; valid: 'top', 'bottom'")
    if not 1 <= k <= op.dim:
        raise SandboxError(f"k={k} eigenpairs asked of an operator of dimension {op.dim}; "
                           f"choose 1 <= k <= {op.dim}")
    num_steps = min(op.dim, num_steps or max(2 * k + 20, 40))
    if num_steps < k:
        raise SandboxError(f"num_steps={num_steps} is smaller than k={k}; use num_steps >= k")
    out = ritz_pairs(op, key, k, num_steps, which)
    return ensure_finite(out, "the Lanczos eigenpairs")


@functools.partial(jax.jit, static_argnames=("k", "num_steps", "which"))
def ritz_pairs(op, key, k: int, num_steps: int, which: str = "top") -> Eigenpairs:
    """The k top or bottom Ritz pairs of `num_steps` Lanczos steps from a Gaussian start: traceable (a
    training step under `jit` may call it), unchecked; `eigenpairs` is the checked entry point."""
    op = op.linearized()  # the pass at w once, not once per step
    v0_N = jax.random.normal(key, (op.dim,), op.dtype)
    tri = lanczos(op, v0_N, num_steps)
    theta_M, s_MxM = tridiagonal_eigh(tri)
    idx = jnp.arange(num_steps)[::-1][:k] if which == "top" else jnp.arange(k)
    vectors_KxN = (tri.basis_MxN.T @ s_MxM[:, idx]).T
    residuals_K = jnp.abs(tri.betas_M[-1] * s_MxM[-1, idx])
    return Eigenpairs(theta_M[idx], vectors_KxN, residuals_K)


def top_eigenpairs(op: LinearOperator, k: int = 5, *, key: jax.Array,
                   num_steps: int | None = None):
    """(eigvals descending, eigvecs as rows) of the k largest eigenvalues; see `eigenpairs`."""
    out = eigenpairs(op, k, key=key, num_steps=num_steps, which="top")
    return out.values_K, out.vectors_KxN


def bottom_eigenpairs(op: LinearOperator, k: int = 5, *, key: jax.Array,
                      num_steps: int | None = None):
    """(eigvals ascending, eigvecs as rows) of the k smallest eigenvalues; see `eigenpairs`."""
    out = eigenpairs(op, k, key=key, num_steps=num_steps, which="bottom")
    return out.values_K, out.vectors_KxN
