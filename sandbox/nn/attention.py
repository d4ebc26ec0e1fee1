"""Scaled dot-product attention and multi-head attention.

Letters: B batch, H heads, L query length, S key length, K head width, D = H K.
The mask is boolean, True where a query may attend to a key; it broadcasts to
BxHxLxS, so one function serves a causal decoder (mask = causal_mask(L)) and a
bidirectional encoder with padding (mask_Bx1x1xS).
"""

import jax
import jax.numpy as jnp

from sandbox.nn import embedding
from sandbox.nn.linear import dense


def causal_mask(length):
    """LxL boolean, lower-triangular: query t may attend to keys s <= t."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))


def attention_weights(q_BxHxLxK, k_BxHxSxK, mask=None):
    """weights_BxHxLxS = softmax(q k^T / sqrt(K) + masked) over the keys: each row a probability
    distribution, so every head's matrix is row-stochastic (a Markov chain on positions).

    Dividing by sqrt(K) keeps the scores' variance O(1) when q, k have unit-variance
    entries, so the softmax doesn't saturate. Scores and softmax are computed in
    promote_types(dtype, float32): bf16 gets float32, float64 stays float64. Masked
    scores get the most negative finite number, not -inf, so a fully masked row
    gives a uniform (finite) distribution instead of NaN.
    """
    dtype = jnp.promote_types(q_BxHxLxK.dtype, jnp.float32)
    k_width = q_BxHxLxK.shape[-1]
    scores_BxHxLxS = jnp.einsum(
        "bhlk,bhsk->bhls", q_BxHxLxK.astype(dtype), k_BxHxSxK.astype(dtype)
    ) / jnp.sqrt(jnp.asarray(k_width, dtype))
    if mask is not None:
        scores_BxHxLxS = jnp.where(mask, scores_BxHxLxS, jnp.finfo(dtype).min)
    return jax.nn.softmax(scores_BxHxLxS, axis=-1)


def scaled_dot_product_attention(q_BxHxLxK, k_BxHxSxK, v_BxHxSxK, mask=None):
    """softmax(q k^T / sqrt(K) + masked) v  (Vaswani et al., 2017), weights from `attention_weights`."""
    weights_BxHxLxS = attention_weights(q_BxHxLxK, k_BxHxSxK, mask).astype(v_BxHxSxK.dtype)
    return jnp.einsum("bhls,bhsk->bhlk", weights_BxHxLxS, v_BxHxSxK)


def project_heads(p, x_BxLxD, n_heads, rope=False, positions_L=None, n_kv_heads=None, rope_base=10000.0):
    """(q, k, v)_BxHxLxK: x's dense projections split into H heads of width K = D/H; with
    rope=True, q and k are rotated by RoPE (theta_i = rope_base^(-2i/K)) at positions_L (default 0..L-1).

    Grouped-query attention (Ainslie et al., 2023): with n_kv_heads = G < H, k and v project to G
    heads only (D x G K), and query head h reads key/value head floor(h / (H/G)), so each k/v head
    serves H/G consecutive query heads. The G heads are repeated to H here, so every caller sees
    H heads; G = H (the default) is plain multi-head attention.
    """
    b, length, d = x_BxLxD.shape
    width = d // n_heads
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads

    def split_heads(y_BxLxGK):
        return y_BxLxGK.reshape(b, length, -1, width).transpose(0, 2, 1, 3)

    q_BxHxLxK = split_heads(dense(p["q"], x_BxLxD))
    k_BxGxLxK = split_heads(dense(p["k"], x_BxLxD))
    v_BxGxLxK = split_heads(dense(p["v"], x_BxLxD))
    if rope:
        positions_L = jnp.arange(length) if positions_L is None else positions_L
        q_BxHxLxK = embedding.rope(q_BxHxLxK, positions_L, rope_base)
        k_BxGxLxK = embedding.rope(k_BxGxLxK, positions_L, rope_base)
    group = n_heads // n_kv_heads
    if group > 1:
        k_BxGxLxK, v_BxGxLxK = (jnp.repeat(t, group, axis=1) for t in (k_BxGxLxK, v_BxGxLxK))
    return q_BxHxLxK, k_BxGxLxK, v_BxGxLxK


def multi_head_attention(p, x_BxLxD, n_heads, mask=None, rope=False, positions_L=None, n_kv_heads=None,
                         rope_base=10000.0):
    """o(concat_h attention(q_h(x), k_h(x), v_h(x))), p = {"q", "k", "v", "o"} dense maps.

    Each of H heads attends in its own K = D/H dimensional subspace, so the layer can
    mix information by several patterns at once for the cost of one. With rope=True,
    q and k are rotated by RoPE at positions_L (default 0..L-1) before the scores; with
    n_kv_heads < H, groups of query heads share key/value heads (see `project_heads`).
    """
    b, length, d = x_BxLxD.shape
    q_BxHxLxK, k_BxHxLxK, v_BxHxLxK = project_heads(p, x_BxLxD, n_heads, rope, positions_L, n_kv_heads, rope_base)
    out_BxHxLxK = scaled_dot_product_attention(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, mask)
    out_BxLxD = out_BxHxLxK.transpose(0, 2, 1, 3).reshape(b, length, d)
    return dense(p["o"], out_BxLxD)
