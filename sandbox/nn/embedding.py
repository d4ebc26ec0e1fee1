"""Token embeddings and positional encodings: learned, sinusoidal, rotary (RoPE)."""

import jax.numpy as jnp


def embed_tokens(table_VxD, tokens_BxL):
    """Row lookup: x[b, l] = table[tokens[b, l]]; the same as one_hot(tokens) @ table."""
    return jnp.take(table_VxD, tokens_BxL, axis=0)


def sinusoidal_positions(length, d, dtype=jnp.float32, base=10000.0):
    """Vaswani et al. (2017): PE[t, 2i] = sin(t / base^(2i/d)), PE[t, 2i+1] = cos(t / base^(2i/d)).

    Each pair of channels is a clock with its own frequency, so PE[t + s] is a fixed
    rotation of PE[t] (per pair): relative offsets are linear functions of the code.
    """
    half = (d + 1) // 2
    inv_freq = base ** (-2.0 * jnp.arange(half, dtype=dtype) / d)
    angles_LxH = jnp.arange(length, dtype=dtype)[:, None] * inv_freq[None, :]
    pe = jnp.stack([jnp.sin(angles_LxH), jnp.cos(angles_LxH)], axis=-1)  # interleave sin, cos
    return pe.reshape(length, 2 * half)[:, :d]


def rope(x_BxHxLxK, positions_L, base=10000.0):
    """Rotary position embedding (Su et al., 2021), "rotate-half" layout (GPT-NeoX, LLaMA).

    Channel i and channel i + K/2 form a 2-d pair rotated by the angle t * theta_i at
    position t, with theta_i = base^(-2i/K):
        rope(x)_t = x_t * cos(t theta) + rotate_half(x_t) * sin(t theta),
        rotate_half([x1, x2]) = [-x2, x1].
    Rotations compose, so <rope(q)_t, rope(k)_s> depends on t and s only through t - s.
    """
    k = x_BxHxLxK.shape[-1]
    dtype = x_BxHxLxK.dtype
    inv_freq = base ** (-2.0 * jnp.arange(k // 2, dtype=dtype) / k)
    angles_LxK2 = jnp.asarray(positions_L, dtype)[:, None] * inv_freq[None, :]
    angles_LxK = jnp.concatenate([angles_LxK2, angles_LxK2], axis=-1)
    x1, x2 = jnp.split(x_BxHxLxK, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x_BxHxLxK * jnp.cos(angles_LxK) + rotated * jnp.sin(angles_LxK)
