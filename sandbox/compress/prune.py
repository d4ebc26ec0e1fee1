"""Pruning: unstructured magnitude pruning and N:M structured sparsity.

Magnitude pruning zeroes the fraction `sparsity` of entries with the smallest |w|, which is the
sparse W' closest to W in Frobenius norm for that number of zeros. N:M sparsity keeps the N
largest |w| in every run of M consecutive input rows of each output channel (W is (D_in, D_out)),
the pattern sparse tensor cores run at full speed (2:4 keeps half).
"""

import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError


def magnitude_prune(w_MxN, sparsity: float) -> dict:
    """Zero the round(sparsity * size) smallest-magnitude entries: {"w", "mask", "kept_fraction"}."""
    if not 0.0 <= sparsity < 1.0:
        raise SandboxError(f"sparsity {sparsity!r} must be in [0, 1): the fraction of weights set to zero")
    w = jnp.asarray(w_MxN)
    n_drop = int(round(sparsity * w.size))
    order = jnp.argsort(jnp.abs(w).ravel())
    mask = jnp.ones(w.size, bool).at[order[:n_drop]].set(False).reshape(w.shape)
    return {"w": jnp.where(mask, w, 0), "mask": mask, "kept_fraction": 1.0 - n_drop / w.size}


def nm_prune(w_MxN, n: int = 2, m: int = 4) -> dict:
    """N:M sparsity along the input dimension: in each block of m rows per column keep the n largest |w|."""
    w = jnp.asarray(w_MxN)
    rows, cols = w.shape
    if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer)) and 0 < n < m):
        raise SandboxError(f"N:M sparsity {n}:{m} is invalid: need integers 0 < N < M, e.g. 2:4")
    if rows % m:
        raise SandboxError(f"M={m} does not divide the input dimension {rows}: choose M among its divisors, e.g. 4")
    blocks_BxMxN = jnp.abs(w).reshape(rows // m, m, cols)
    rank_BxMxN = jnp.argsort(jnp.argsort(-blocks_BxMxN, axis=1), axis=1)  # 0 = largest in its block
    mask = (rank_BxMxN < n).reshape(rows, cols)
    return {"w": jnp.where(mask, w, 0), "mask": mask, "kept_fraction": n / m}
