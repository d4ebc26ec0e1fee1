"""Normalization layers: LayerNorm and RMSNorm over the last axis."""

import jax.numpy as jnp


def layer_norm(p, x_NxD, eps=1e-5):
    """LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * scale + bias, over the last axis.

    Centering and rescaling makes each position's vector have mean 0 and variance 1
    before the learned affine map (Ba et al., 2016).
    """
    mean = x_NxD.mean(-1, keepdims=True)
    var = jnp.square(x_NxD - mean).mean(-1, keepdims=True)
    return (x_NxD - mean) * jnp.reciprocal(jnp.sqrt(var + eps)) * p["scale"] + p["bias"]


def rms_norm(p, x_NxD, eps=1e-5):
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * scale: rescaling only, no centering (Zhang & Sennrich, 2019)."""
    ms = jnp.square(x_NxD).mean(-1, keepdims=True)
    return x_NxD * jnp.reciprocal(jnp.sqrt(ms + eps)) * p["scale"]


def init_layer_norm(d, dtype=jnp.float32):
    """scale = 1, bias = 0: the layer starts as a pure normalization."""
    return {"scale": jnp.ones((d,), dtype), "bias": jnp.zeros((d,), dtype)}


def init_rms_norm(d, dtype=jnp.float32):
    """scale = 1."""
    return {"scale": jnp.ones((d,), dtype)}


def norm(p, x_NxD, kind, eps=1e-5):
    """Dispatch on kind: "layernorm" or "rmsnorm"."""
    return layer_norm(p, x_NxD, eps) if kind == "layernorm" else rms_norm(p, x_NxD, eps)
