"""Affine maps y = x W + b, full-rank or factorized as W = U V."""

import jax
import jax.numpy as jnp


def dense(p, x_NxDin):
    """y = x W (+ b); with p = {"u", "v"} instead of {"w"}: y = (x U) V (+ b).

    The factorized form is what SVD compression leaves behind: W (Din x Dout) is
    replaced by U (Din x K) V (K x Dout), costing K (Din + Dout) instead of Din Dout
    multiply-adds. Multiplying x by U first never builds W.
    """
    if "w" in p:
        y = matmul(x_NxDin, p["w"])
    else:
        y = matmul(matmul(x_NxDin, p["u"]), p["v"])
    if "b" in p:
        y = y + p["b"]
    return y


def matmul(x_NxDin, w_DinxDout):
    """x W over x's last axis, with every leading axis (batch, position) flattened into one row axis N.

    The result is x @ W exactly; the flattening is for the backward pass, whose weight gradient is
    dW = x^T dy: written over one row axis, XLA computes it as one matrix product reading both
    operands as they lie. Over (B, L) it would instead recompute dy and write it out transposed
    (one extra pass over the largest activation, the N x F hidden gradient of the MLP).
    """
    y_NxDout = x_NxDin.reshape(-1, x_NxDin.shape[-1]) @ w_DinxDout
    return y_NxDout.reshape(*x_NxDin.shape[:-1], y_NxDout.shape[-1])


def init_dense(key, d_in, d_out, std, bias=False, dtype=jnp.float32):
    """{"w": N(0, std^2) of shape d_in x d_out} and, with bias, {"b": zeros(d_out)}."""
    p = {"w": std * jax.random.normal(key, (d_in, d_out), dtype)}
    if bias:
        p["b"] = jnp.zeros((d_out,), dtype)
    return p
