"""Lanczos with full reorthogonalization: extreme eigenpairs of a symmetric operator.

m steps build an orthonormal basis Q (m x N) of the Krylov space span{v, Av, ..., A^{m-1} v} and
the tridiagonal T = Q A Q^T (alphas on the diagonal, betas beside it). The eigenvalues of T (Ritz
values) converge first at the ends of the spectrum; Ritz vector y_j = Q^T s_j has residual
||A y_j - theta_j y_j|| = |beta_m s_j[m-1]|. Each new vector is orthogonalized twice against all
previous ones (Gram-Schmidt "twice is enough"), which keeps Q orthonormal to working precision
and avoids ghost eigenvalues. On breakdown (beta ~ 0, an invariant subspace found) a fresh random
vector orthogonal to Q continues the run, with a zero coupling in T.
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
    masks_SxN = jnp.ones((1, op.dim), op.dtype) if mask_N is None else mask_N.astype(op.dtype)[None]
    basis_MxN = start(v0_N, masks_SxN, num_steps)

    def step(basis_MxN, i):
        basis_MxN, alpha_S, beta_S = advance(basis_MxN, i, op.mv(basis_MxN[i]), masks_SxN)
        return basis_MxN, (alpha_S[0], beta_S[0])

    basis_MxN, (alphas_M, betas_M) = jax.lax.scan(step, basis_MxN, jnp.arange(num_steps))
    return Tridiagonal(alphas_M, betas_M, basis_MxN[:num_steps])


# Segmented Lanczos: S independent runs on disjoint coordinate sets (0/1 rows of masks_SxN) packed in one
# vector of length N. Each run's vectors live on its own coordinates, so one (M + 1) x N basis holds all S
# bases, per-run inner products are masked sums (masks_SxN @ (x * y)), and one pass over the basis
# orthogonalizes every run at once. With S = 1 and a mask of ones it is plain Lanczos.

def start(v0_N: jax.Array, masks_SxN: jax.Array, num_steps: int) -> jax.Array:
    """The (num_steps + 1) x N basis holding each run's normalized masked start vector in row 0 (row m is
    scratch: the step after the last writes there, so every step writes row i + 1)."""
    scale_S = 1 / jnp.sqrt(masks_SxN @ (v0_N * v0_N))
    return jnp.zeros((num_steps + 1, masks_SxN.shape[1]), masks_SxN.dtype).at[0].set(v0_N * (scale_S @ masks_SxN))


def advance(basis_MxN: jax.Array, i, w_N: jax.Array, masks_SxN: jax.Array):
    """Step i of the S runs given w = A q_i (the packed matvec: each run's A q on its own coordinates):
    (basis with row i + 1 set, alpha_S, beta_S). Each new vector is orthogonalized twice against its run's
    previous ones; on breakdown a fresh direction continues the run with beta = 0; once a run has filled
    its n_s coordinates (i + 1 >= n_s) its later rows are zero and alpha = beta = 0."""
    m1, n = basis_MxN.shape
    dtype = basis_MxN.dtype
    tiny = jnp.finfo(dtype).eps * 10
    expand = lambda c_S: c_S.astype(dtype) @ masks_SxN  # noqa: E731  (per-run scalars -> packed vector)
    q_N = basis_MxN[i]
    alpha_S = masks_SxN @ (q_N * w_N)
    # restart directions after a breakdown: shifts of a fixed vector with irregular entries
    restart_N = jnp.sin(jnp.arange(1, n + 1, dtype=dtype) * 12.9898) * 43758.5453 % 1 - 0.5
    both_2xN = jnp.stack([w_N, jnp.roll(restart_N, i) * jnp.sum(masks_SxN, axis=0)])
    for _ in range(2):  # rows not yet filled are zero and contribute nothing; one pass serves w and fresh
        per_run_XxN = (both_2xN[:, None, :] * masks_SxN[None]).reshape(-1, n)
        back_XxN = (per_run_XxN @ basis_MxN.T) @ basis_MxN
        both_2xN = both_2xN - jnp.sum(back_XxN.reshape(2, -1, n) * masks_SxN[None], axis=1)
    w_N, fresh_N = both_2xN
    beta_S = jnp.sqrt(masks_SxN @ (w_N * w_N))
    broke_S = beta_S <= tiny * jnp.maximum(jnp.abs(alpha_S), 1.0)
    fresh_N = fresh_N * expand(1 / (jnp.sqrt(masks_SxN @ (fresh_N * fresh_N)) + tiny))
    nxt_N = jnp.where(expand(broke_S) > 0, fresh_N, w_N * expand(1 / jnp.where(broke_S, 1, beta_S)))
    live_S = i + 1 < jnp.sum(masks_SxN, axis=1)  # the Krylov space has not yet filled the run's coordinates
    nxt_N = nxt_N * expand(live_S)
    return basis_MxN.at[i + 1].set(nxt_N), alpha_S, jnp.where(broke_S | ~live_S, 0.0, beta_S)


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
    out = _eigenpairs(op, key, k, num_steps, which)
    return ensure_finite(out, "the Lanczos eigenpairs")


@functools.partial(jax.jit, static_argnames=("k", "num_steps", "which"))
def _eigenpairs(op, key, k, num_steps, which):
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
