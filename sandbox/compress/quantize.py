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

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError

BITS = (4, 8)
GRANULARITIES = ("tensor", "channel", "group")
SCALE_BITS = 16  # each group stores its step in float16 (and its zero point in b bits)
FLOAT_DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}


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
    """
    check(np.shape(w_MxN)[0], bits, granularity, group_size)
    w_hat, q, step, zero, predicted = _rtn(jnp.asarray(w_MxN, jnp.float32), bits, symmetric, granularity, group_size)
    overhead = step.size * (SCALE_BITS + (0 if symmetric else bits))
    return {
        "w": w_hat,
        "q": q,
        "scale": step,
        "zero": zero,
        "bits_per_weight": bits + overhead / w_hat.size,
        "error": {**error_stats(w_MxN, w_hat), "predicted_rmse": predicted},
    }


@partial(jax.jit, static_argnums=(2, 3, 4))  # bits traced: one compilation serves 4 and 8 bits
def _rtn(w_MxN, bits, symmetric, granularity, group_size):
    g = _grouped(w_MxN, granularity, group_size)
    lo, hi = jnp.min(g, axis=1, keepdims=True), jnp.max(g, axis=1, keepdims=True)
    if symmetric:
        q_max = 2 ** (bits - 1) - 1
        q_min = -q_max
        step = jnp.maximum(jnp.maximum(-lo, hi), 1e-30) / q_max
        zero = jnp.zeros_like(step)
    else:
        q_min, q_max = 0, 2**bits - 1
        step = jnp.maximum(hi - lo, 1e-30) / q_max
        zero = jnp.round(-lo / step)
    q = jnp.clip(jnp.round(g / step) + zero, q_min, q_max)
    w_hat = ((q - zero) * step).reshape(w_MxN.shape)
    predicted = jnp.sqrt(jnp.mean(jnp.broadcast_to(step, g.shape) ** 2) / 12.0)
    return w_hat, q.astype(jnp.int8).reshape(w_MxN.shape), step, zero, predicted


@jax.jit
def error_stats(w, w_hat) -> dict:
    """rmse, max_abs and relative Frobenius error ||W - W'||_F / ||W||_F of an approximation."""
    w, w_hat = jnp.asarray(w, jnp.float32), jnp.asarray(w_hat, jnp.float32)
    d = w_hat - w
    return {
        "rmse": jnp.sqrt(jnp.mean(d**2)),
        "max_abs": jnp.max(jnp.abs(d)),
        "rel_fro": jnp.linalg.norm(d) / jnp.linalg.norm(w),
    }


def cast(w, dtype: str = "bfloat16") -> dict:
    """Round W to bfloat16 or float16 and back: {"w", "bits_per_weight", "error"}.

    Round-to-nearest gives relative error at most the unit roundoff u = 2^{-p} (p = 8 fraction
    bits + 1 for bfloat16, 11 for float16); `error` adds max_rel and u, and counts entries that
    overflow (|w| > 65504 in float16) or flush to zero.
    """
    if dtype not in FLOAT_DTYPES:
        raise SandboxError(f"dtype {dtype!r} is not supported: choose one of {', '.join(FLOAT_DTYPES)}")
    w_hat, stats, max_rel, overflow, underflow = _cast(jnp.asarray(w, jnp.float32), dtype)
    return {
        "w": w_hat,
        "bits_per_weight": 16.0,
        "error": {
            **stats,
            "max_rel": max_rel,
            "unit_roundoff": float(jnp.finfo(FLOAT_DTYPES[dtype]).eps) / 2,
            "overflow": int(overflow),
            "underflow": int(underflow),
        },
    }


@partial(jax.jit, static_argnums=1)
def _cast(w, dtype):
    w_hat = w.astype(FLOAT_DTYPES[dtype]).astype(jnp.float32)
    nonzero = w != 0
    rel = jnp.where(nonzero, jnp.abs(w_hat - w) / jnp.where(nonzero, jnp.abs(w), 1.0), 0.0)
    finite = jnp.isfinite(w_hat)
    stats = error_stats(jnp.where(finite, w, 0.0), jnp.where(finite, w_hat, 0.0))
    return w_hat, stats, jnp.max(jnp.where(finite, rel, 0.0)), jnp.sum(~finite), jnp.sum(nonzero & (w_hat == 0))
