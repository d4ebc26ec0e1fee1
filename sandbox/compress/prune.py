"""Pruning: unstructured magnitude pruning and N:M structured sparsity.

Magnitude pruning zeroes the fraction `sparsity` of entries with the smallest |w|, which is the
sparse W' closest to W in Frobenius norm for that number of zeros. N:M sparsity keeps the N
largest |w| in every run of M consecutive input rows of each output channel (W is (D_in, D_out)),
the pattern sparse tensor cores run at full speed (2:4 keeps half).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError


def magnitude_prune(w_MxN, sparsity: float) -> dict:
    """Zero the round(sparsity * size) smallest-magnitude entries: {"w", "mask", "kept_fraction"}."""
    if not 0.0 <= sparsity < 1.0:
        raise SandboxError(f"sparsity {sparsity!r} must be in [0, 1): the fraction of weights set to zero")
    w = jnp.asarray(w_MxN)
    n_drop = int(round(sparsity * w.size))
    w_pruned, mask = _magnitude(w, n_drop)
    return {"w": w_pruned, "mask": mask, "kept_fraction": 1.0 - n_drop / w.size}


@jax.jit
def _magnitude(w_MxN, n_drop):
    """n_drop is traced: one compilation per weight shape serves every sparsity."""
    order = jnp.argsort(jnp.abs(w_MxN).ravel())
    rank = jnp.zeros(w_MxN.size, jnp.int32).at[order].set(jnp.arange(w_MxN.size, dtype=jnp.int32))
    mask = (rank >= n_drop).reshape(w_MxN.shape)  # rank 0 = smallest |w|
    return jnp.where(mask, w_MxN, 0), mask


def nm_prune(w_MxN, n: int = 2, m: int = 4) -> dict:
    """N:M sparsity along the input dimension: in each block of m rows per column keep the n largest |w|."""
    w = jnp.asarray(w_MxN)
    check_nm(w.shape[0], n, m)
    w_pruned, mask = _n_of_m(w, n, m)
    return {"w": w_pruned, "mask": mask, "kept_fraction": n / m}


def check_nm(rows: int, n: int, m: int) -> None:
    """Raise a SandboxError unless 0 < n < m are integers and m divides the input dimension."""
    if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer)) and 0 < n < m):
        raise SandboxError(f"N:M sparsity {n}:{m} is invalid: need integers 0 < N < M, e.g. 2:4")
    if rows % m:
        raise SandboxError(f"M={m} does not divide the input dimension {rows}: choose M among its divisors, e.g. 4")


@partial(jax.jit, static_argnums=(1, 2))
def _n_of_m(w_MxN, n, m):
    rows, cols = w_MxN.shape
    blocks_BxMxN = jnp.abs(w_MxN).reshape(rows // m, m, cols)
    rank_BxMxN = jnp.argsort(jnp.argsort(-blocks_BxMxN, axis=1), axis=1)  # 0 = largest in its block
    mask = (rank_BxMxN < n).reshape(rows, cols)
    return jnp.where(mask, w_MxN, 0), mask
