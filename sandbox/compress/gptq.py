"""Second-order compression of a linear layer: GPTQ (quantization) and SparseGPT (pruning).

Both fix the input rows of W (I x O) one at a time and let OBS move the rows not yet fixed to absorb the
error, against the layer Hessian H = 2 X^T X of calibration inputs (`sandbox.compress.obs`):
- GPTQ (Frantar, Ashkboos, Hoefler & Alistarh 2022) rounds row i to RTN's grid (`quantize.grid`): per
  tensor or per output channel the grid comes from the original W, as RTN's; with groups of `group_size`
  rows, from the group's rows as they stand when its first row is reached (already moved by the earlier
  rows' errors; the reference code reads a block's stale copy there, so its groups depend on block_size,
  these do not). act_order fixes rows in decreasing H_ii first (the inputs with the most energy), groups
  then running over consecutive rows of that order.
- SparseGPT (Frantar & Alistarh 2023) zeroes a row's pruned entries. Its mask is adaptive: at the start of
  each block of `block_size` rows, the fraction `sparsity` of the block's entries with the smallest OBS
  saliency w^2 / [H^{-1}]_ii (current weights, [H^{-1}]_ii = U_ii^2 of the rows left) is pruned; for N:M,
  each run of M rows keeps per column the N entries of largest saliency.
Neither can be worse than doing nothing to the rows not yet fixed, but neither is optimal: the rows already
fixed never move again.
"""

import numpy as np

from sandbox.compress import obs
from sandbox.compress import prune as pruning
from sandbox.compress import quantize as rtn
from sandbox.errors import SandboxError


def quantize(w_IxO, hessian_IxI, bits: int, group_size: int | None = None, damp: float = 0.01,
             block_size: int = 128, act_order: bool = False, symmetric: bool = True,
             granularity: str | None = None) -> tuple:
    """GPTQ: (W' dequantized (I x O, float64), info {"q", "scale", "zero", "perm", "bits_per_weight",
    "objective"}) with the grid of `quantize.quantize` (granularity "tensor" | "channel" | "group";
    default "group" when group_size is given, else "channel"). objective = tr((W - W')^T H (W - W'))."""
    granularity = granularity or ("group" if group_size else "channel")
    n, m = np.shape(w_IxO)
    rtn.check(n, bits, granularity, group_size)
    w, h = obs.prepared(w_IxO, hessian_IxI, damp)
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(n)
    w, h = w[perm], h[np.ix_(perm, perm)]
    axis = None if granularity == "tensor" else 0
    fixed = None if granularity == "group" else rtn.grid(w, bits, symmetric, axis)
    grids, q = [], np.zeros_like(w)

    def target(i, row_O, rows):
        if fixed is None and i % group_size == 0:
            grids.append(rtn.grid(rows(i + group_size), bits, symmetric, axis=0))
        step, zero, q_min, q_max = fixed or grids[-1]
        q[i], w_hat = rtn.to_grid(row_O, step.ravel(), zero.ravel(), q_min, q_max)
        return w_hat

    w_hat = obs.sweep(w, obs.inverse_cholesky(h), target, block_size)
    inverse = np.argsort(perm)
    scale, zero = (np.concatenate([g[j] for g in ([fixed] if fixed else grids)]) for j in (0, 1))
    overhead = scale.size * (rtn.SCALE_BITS + (0 if symmetric else bits))
    if act_order and granularity == "group":
        overhead += 32 * n  # each input row's group index (int32), as GPTQ's g_idx
    return w_hat[inverse], {
        "q": q[inverse].astype(np.int8 if symmetric else np.uint8),
        "scale": scale,
        "zero": zero,
        "perm": perm,
        "bits_per_weight": bits + overhead / (n * m),
        "objective": obs.objective(w_IxO, w_hat[inverse], hessian_IxI),
    }


def prune(w_IxO, hessian_IxI, sparsity: float | None = None, n_m: tuple | None = None, damp: float = 0.01,
          block_size: int = 128) -> tuple:
    """SparseGPT: (W' (I x O, float64), info {"mask", "kept_fraction", "objective"}) for exactly one of
    `sparsity` (unstructured, adaptive per block) or `n_m` = (N, M) (keep N of every M input rows per column)."""
    if (sparsity is None) == (n_m is None):
        raise SandboxError("SparseGPT takes exactly one of sparsity or n_m=(N, M)")
    n, m = np.shape(w_IxO)
    if n_m is not None:
        pruning.check_nm(n, *n_m)
    elif not 0.0 <= sparsity < 1.0:
        raise SandboxError(f"sparsity {sparsity!r} must be in [0, 1): the fraction of weights set to zero")
    w, h = obs.prepared(w_IxO, hessian_IxI, damp)
    u = obs.inverse_cholesky(h)
    d_I = np.diag(u) ** 2  # [H_F^{-1}]_ii of the rows left when row i is fixed
    mask = np.ones_like(w, bool)

    def target(i, row_O, rows):
        if n_m is not None and i % n_m[1] == 0:
            stop = i + n_m[1]
            mask[i:stop] = _largest(rows(stop) ** 2 / d_I[i:stop, None], n_m[0], axis=0)
        elif n_m is None and i % block_size == 0:
            stop = min(i + block_size, n)
            saliency = rows(stop) ** 2 / d_I[i:stop, None]
            kept = saliency.size - int(round(sparsity * saliency.size))
            mask[i:stop] = _largest(saliency.ravel(), kept, axis=0).reshape(saliency.shape)
        return np.where(mask[i], row_O, 0.0)

    w_hat = obs.sweep(w, u, target, block_size)
    return w_hat, {"mask": mask, "kept_fraction": float(mask.mean()),
                   "objective": obs.objective(w_IxO, w_hat, hessian_IxI)}


def _largest(saliency, k: int, axis: int):
    """A mask of the k largest entries along `axis` (ties: the earlier entry is kept)."""
    order = np.argsort(-saliency, axis=axis, kind="stable")
    rank = np.argsort(order, axis=axis, kind="stable")
    return rank < k
