"""Round-to-nearest (RTN) integer quantization and low-precision float casts, with their errors.

A weight w in a group with scale Δ (the step) and zero point z is stored as the integer
q = clip(round(w / Δ) + z, q_min, q_max) and read back as w' = (q - z) Δ.
Symmetric: z = 0, Δ = max|w| / (2^{b-1} - 1), q in [-(2^{b-1}-1), 2^{b-1}-1].
Asymmetric: Δ = (max w - min w) / (2^b - 1), z = round(-min w / Δ), q in [0, 2^b - 1].
A group is the whole tensor, one output channel (a column of W, shape (D_in, D_out)), or
`group_size` consecutive input rows of one channel. Inside the range, the rounding error is
close to uniform on [-Δ/2, Δ/2], so its root-mean-square is Δ / sqrt(12): the prediction that
`quantize` returns beside the measured error.
"""

import jax
import ml_dtypes
import numpy as np

from sandbox.errors import SandboxError

BITS = (4, 8)
GRANULARITIES = ("tensor", "channel", "group")
SCALE_BITS = 16  # each group stores its step in float16 (and its zero point in b bits)
FLOAT_DTYPES = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def check(m: int, bits: int, granularity: str, group_size: int) -> None:
    """Raise a SandboxError unless `bits` is supported and the grouping fits an input dimension m."""
    if bits not in BITS:
        raise SandboxError(f"bits {bits!r} is not supported: choose one of {', '.join(map(str, BITS))}")
    if granularity not in GRANULARITIES:
        raise SandboxError(f"granularity {granularity!r} is unknown: choose one of {', '.join(GRANULARITIES)}")
    if granularity == "group" and (not isinstance(group_size, (int, np.integer)) or group_size < 1 or m % group_size):
        raise SandboxError(
            f"group size {group_size!r} does not divide the input dimension {m}: "
            f"choose a divisor such as {', '.join(str(d) for d in (32, 64, 128) if m % d == 0) or m}"
        )


def _grouped(w_MxN, granularity: str, group_size: int):
    """Reshape W to (G, g, N') so each quantization group is one [i, :, j] slice."""
    m, n = w_MxN.shape
    if granularity == "tensor":
        return w_MxN.reshape(1, m * n, 1)
    if granularity == "channel":
        return w_MxN.reshape(1, m, n)
    return w_MxN.reshape(m // group_size, group_size, n)


def quantize(w_MxN, bits: int = 8, symmetric: bool = True, granularity: str = "channel", group_size: int = 128) -> dict:
    """RTN-quantize W and return {"w": dequantized W, "q", "scale", "zero", "bits_per_weight", "error"}.

    `error` holds the measured rmse, max_abs and relative Frobenius error, and the predicted rmse
    sqrt(mean Δ^2 / 12) over entries. bits_per_weight counts the stored step and zero point.
    Computed on the host in float32 (numpy): a few elementwise passes, nothing compiled per shape.
    """
    check(np.shape(w_MxN)[0], bits, granularity, group_size)
    w = np.asarray(w_MxN, np.float32)
    w_hat, q, step, zero, predicted = _rtn(w, bits, symmetric, granularity, group_size)
    overhead = step.size * (SCALE_BITS + (0 if symmetric else bits))
    return {
        "w": jax.device_put(w_hat),
        "q": q,
        "scale": step,
        "zero": zero,
        "bits_per_weight": bits + overhead / w_hat.size,
        "error": {**error_stats(w, w_hat), "predicted_rmse": predicted},
    }


def _rtn(w_MxN, bits, symmetric, granularity, group_size):
    g = _grouped(w_MxN, granularity, group_size)
    step, zero, q_min, q_max = grid(g, bits, symmetric, axis=1)
    q, w_hat = to_grid(g, step, zero, q_min, q_max)
    predicted = np.float32(np.sqrt(np.mean(np.broadcast_to(step, g.shape) ** 2) / 12.0))
    stored = np.int8 if symmetric else np.uint8  # q in [-(2^{b-1}-1), 2^{b-1}-1] or [0, 2^b - 1]
    return w_hat.reshape(w_MxN.shape), q.astype(stored).reshape(w_MxN.shape), step, zero, predicted


def grid(values, bits: int, symmetric: bool, axis) -> tuple:
    """(step, zero, q_min, q_max): the b-bit grid of the values' range along `axis` (kept as size 1), as above.
    The one grid of RTN and GPTQ (which draws it from weights already updated by earlier rows)."""
    lo, hi = np.min(values, axis=axis, keepdims=True), np.max(values, axis=axis, keepdims=True)
    tiny = np.float32(1e-30)
    if symmetric:
        q_max = 2 ** (bits - 1) - 1
        step = np.maximum(np.maximum(-lo, hi), tiny) / np.float32(q_max)
        return step, np.zeros_like(step), -q_max, q_max
    q_max = 2**bits - 1
    step = np.maximum(hi - lo, tiny) / np.float32(q_max)
    return step, np.round(-lo / step), 0, q_max


def to_grid(w, step, zero, q_min: int, q_max: int) -> tuple:
    """(q, w'): the integers q = clip(round(w / step) + zero, q_min, q_max) and w' = (q - zero) step."""
    q = np.clip(np.round(w / step) + zero, q_min, q_max)
    return q, (q - zero) * step


def error_stats(w, w_hat) -> dict:
    """rmse, max_abs and relative Frobenius error ||W - W'||_F / ||W||_F of an approximation."""
    w, w_hat = np.asarray(w, np.float32), np.asarray(w_hat, np.float32)
    d = w_hat - w
    return {
        "rmse": np.float32(np.sqrt(np.mean(d**2))),
        "max_abs": np.max(np.abs(d)),
        "rel_fro": np.float32(np.linalg.norm(d) / np.linalg.norm(w)),
    }


def cast(w, dtype: str = "bfloat16") -> dict:
    """Round W to bfloat16 or float16 and back: {"w", "bits_per_weight", "error"}.

    Round-to-nearest gives relative error at most the unit roundoff u = 2^{-p} (p = 8 fraction
    bits + 1 for bfloat16, 11 for float16); `error` adds max_rel and u, and counts entries that
    overflow (|w| > 65504 in float16) or flush to zero. Computed on the host (numpy, ml_dtypes).
    """
    if dtype not in FLOAT_DTYPES:
        raise SandboxError(f"dtype {dtype!r} is not supported: choose one of {', '.join(FLOAT_DTYPES)}")
    w = np.asarray(w, np.float32)
    with np.errstate(over="ignore"):
        w_hat = w.astype(FLOAT_DTYPES[dtype]).astype(np.float32)
    nonzero = w != 0
    rel = np.where(nonzero, np.abs(w_hat - w) / np.where(nonzero, np.abs(w), 1.0), 0.0)
    finite = np.isfinite(w_hat)
    return {
        "w": jax.device_put(w_hat),
        "bits_per_weight": 16.0,
        "error": {
            **error_stats(np.where(finite, w, 0.0), np.where(finite, w_hat, 0.0)),
            "max_rel": np.max(np.where(finite, rel, 0.0)),
            "unit_roundoff": float(ml_dtypes.finfo(FLOAT_DTYPES[dtype]).eps) / 2,
            "overflow": int(np.sum(~finite)),
            "underflow": int(np.sum(nonzero & (w_hat == 0))),
        },
    }
