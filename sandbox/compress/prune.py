"""Pruning: unstructured magnitude pruning and N:M structured sparsity.

Magnitude pruning zeroes the fraction `sparsity` of entries with the smallest |w|, which is the
sparse W' closest to W in Frobenius norm for that number of zeros. N:M sparsity keeps the N
largest |w| in every run of M consecutive input rows of each output channel (W is (D_in, D_out)),
the pattern sparse tensor cores run at full speed (2:4 keeps half).
"""

import jax
import numpy as np

from sandbox.errors import SandboxError


def magnitude_prune(w_MxN, sparsity: float, ranks=None) -> dict:
    """Zero the round(sparsity * size) smallest-magnitude entries: {"w", "mask", "kept_fraction"}.
    `ranks` (from `magnitude_ranks`) lets a sweep sort each weight once and threshold it at every sparsity."""
    if not 0.0 <= sparsity < 1.0:
        raise SandboxError(f"sparsity {sparsity!r} must be in [0, 1): the fraction of weights set to zero")
    w = np.asarray(w_MxN)
    n_drop = int(round(sparsity * w.size))
    mask = (magnitude_ranks(w) if ranks is None else ranks) >= n_drop
    return {"w": jax.device_put(np.where(mask, w, 0)), "mask": mask, "kept_fraction": 1.0 - n_drop / w.size}


def magnitude_ranks(w_MxN) -> np.ndarray:
    """Each entry's place in the stable ascending order of |w| (0 = smallest; ties by position), on the host."""
    flat = np.abs(np.asarray(w_MxN)).ravel()
    rank = np.empty(flat.size, np.int64)
    rank[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return rank.reshape(np.shape(w_MxN))


def nm_prune(w_MxN, n: int = 2, m: int = 4) -> dict:
    """N:M sparsity along the input dimension: in each block of m rows per column keep the n largest |w|."""
    w = np.asarray(w_MxN)
    check_nm(w.shape[0], n, m)
    w_pruned, mask = _n_of_m(w, n, m)
    return {"w": jax.device_put(w_pruned), "mask": mask, "kept_fraction": n / m}


def check_nm(rows: int, n: int, m: int) -> None:
    """Raise a SandboxError unless 0 < n < m are integers and m divides the input dimension."""
    if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer)) and 0 < n < m):
        raise SandboxError(f"N:M sparsity {n}:{m} is invalid: need integers 0 < N < M, e.g. 2:4")
    if rows % m:
        raise SandboxError(f"M={m} does not divide the input dimension {rows}: choose M among its divisors, e.g. 4")


def _n_of_m(w_MxN, n, m):
    """On the host: a stable sort per block of m (ties keep the earlier row), nothing compiled per shape."""
    rows, cols = w_MxN.shape
    blocks_BxMxN = np.abs(w_MxN).reshape(rows // m, m, cols)
    order = np.argsort(-blocks_BxMxN, axis=1, kind="stable")
    rank_BxMxN = np.argsort(order, axis=1, kind="stable")  # 0 = largest in its block
    mask = (rank_BxMxN < n).reshape(rows, cols)
    return np.where(mask, w_MxN, 0), mask
