"""Optimal Brain Surgeon, one input row at a time: the engine of GPTQ and SparseGPT.

A linear layer y = x W (W: D_in x D_out = I x O) changed to W' loses, on calibration inputs X (T x I),
    E(W') = sum_t ||x_t (W - W')||^2 = tr((W - W')^T H (W - W')) / 2,     H = 2 X^T X  (I x I),
the same H for every output column. OBS (Hassibi & Stork 1993) fixes row i of W to a target (its
quantized or pruned value) and moves the rows not yet fixed by the least-squares correction
    W[F] -= H_F^{-1}[:, i] (w_i - target_i) / H_F^{-1}[i, i]        (F = rows not yet fixed, i in F),
then drops i from F. Fixing the rows in the order 0, 1, ..., I-1, the inverse of H_F is the Schur complement
of the rows already gone, and its row i divided by sqrt of its diagonal is row i of the upper Cholesky factor
U of H^{-1} = U^T U (Frantar et al. 2022): one factorization serves every step, and the correction is
    W[i:] -= U[i, i:]^T (w_i - target_i) / U[i, i].
Lazy blocks: the correction of rows inside a block of `block_size` rows is applied at once; the rows after
the block receive the block's corrections in one matrix product U[block, after]^T E (same result, fewer
passes over W). H is damped by damp * mean(diag H) on its diagonal; an input that is always zero
(H_ii = 0) gets H_ii = 1 and zero weights, as in the reference code.
Computed on the host in numpy float64 (a damped H can be ill-conditioned): nothing is compiled per shape.
"""

import functools
from collections.abc import Callable

import numpy as np

from sandbox.errors import SandboxError


def layer_hessian(gram_IxI):
    """H = 2 X^T X of the layer's squared output error, from the calibration Gram X^T X (`model.calibrate`)."""
    return 2.0 * np.asarray(gram_IxI, np.float64)


def objective(w_IxO, w_hat_IxO, h_IxI) -> float:
    """tr((W - W')^T H (W - W')): twice the layer's squared output error on the calibration inputs."""
    d = np.asarray(w_IxO, np.float64) - np.asarray(w_hat_IxO, np.float64)
    return float(np.sum(d * (np.asarray(h_IxI, np.float64) @ d)))


def prepared(w_IxO, h_IxI, damp: float) -> tuple:
    """(W with dead rows zeroed, damped H): the reference code's treatment of inputs that never fire."""
    w, h = np.array(w_IxO, np.float64), np.array(h_IxI, np.float64)
    if h.shape != (w.shape[0], w.shape[0]):
        raise SandboxError(f"the layer Hessian {h.shape} does not match the weight {w.shape}: need I x I, I = D_in")
    if not 0.0 <= damp:
        raise SandboxError(f"damp {damp!r} must be >= 0 (a fraction of the mean diagonal of H)")
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[dead] = 0.0
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    return w, h


def inverse_cholesky(h_IxI):
    """U, upper triangular, with U^T U = H^{-1} (H already damped)."""
    try:
        lower = np.linalg.cholesky(h_IxI)
        eye = np.eye(len(h_IxI), dtype=lower.dtype)
        h_inv = np.linalg.solve(lower.T, np.linalg.solve(lower, eye))
        return np.linalg.cholesky((h_inv + h_inv.T) / 2).T
    except np.linalg.LinAlgError:
        raise SandboxError("the layer Hessian is not positive definite after damping: "
                           "give more calibration tokens or a larger damp") from None


def sweep(w_IxO, u_IxI, target: Callable, block_size: int = 128):
    """Rows fixed in order 0..I-1 by OBS with lazy block updates: returns W' (I x O).

    `target(i, row_O, rows)` gives row i's fixed value from its current value; `rows(stop)` returns the
    current rows i..stop-1 (every correction so far applied, this block's pending ones too), for a
    target that looks ahead (a quantization group's grid, a pruning mask over a block or N:M run).
    """
    if not (isinstance(block_size, (int, np.integer)) and block_size >= 1):
        raise SandboxError(f"block_size {block_size!r} must be a positive integer")
    w = np.array(w_IxO, copy=True)
    out = np.empty_like(w)
    n = w.shape[0]
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        w1, err = w[i1:i2].copy(), np.zeros_like(w[i1:i2])
        for i in range(i1, i2):
            k = i - i1
            out[i] = target(i, w1[k].copy(), functools.partial(_current, w, w1, err, u_IxI, i1, i))
            err[k] = (w1[k] - out[i]) / u_IxI[i, i]
            w1[k:] -= np.outer(u_IxI[i, i:i2], err[k])
        w[i2:] -= u_IxI[i1:i2, i2:].T @ err
    return out


def _current(w, w1, err, u, i1, i, stop):
    """Rows i..stop-1 as they stand at row i: the block's copy w1, and after it W less the block's pending update."""
    i2 = i1 + len(w1)
    after = w[i2:stop] - u[i1:i, i2:stop].T @ err[:i - i1] if stop > i2 else w[:0]
    return np.concatenate([w1[i - i1:min(stop, i2) - i1], after])
