"""A decoder-only transformer LM (GPT-2 shape, pre-norm), readable top to bottom.

    logits = unembed(norm_final(blocks(embed(tokens))))
    block:  x <- x + attn(norm_attn(x), causal);  x <- x + mlp(norm_mlp(x))

Parameters are one plain nested dict (see `init`), so `jax.grad`, `jax.hessian`,
`ravel_pytree` and optax see the whole model directly. `apply` is split into
`embed` and `forward_from_embeddings` so Jacobians of the logits can be taken with
respect to the input embeddings.
"""

import math

import jax
import jax.numpy as jnp

from sandbox.errors import SandboxError
from sandbox.nn.attention import causal_mask, init_attention, multi_head_attention
from sandbox.nn.embedding import embed_tokens, sinusoidal_positions
from sandbox.nn.linear import init_dense
from sandbox.nn.mlp import gelu_mlp, init_mlp, swiglu_mlp
from sandbox.nn.norms import init_norm, norm


def init(key, cfg):
    """Random parameters for cfg (a `ModelConfig`); float32, N(0, init_std^2) weights.

    Tree: {"embed": {"tokens": VxD, "positions": LxD (learned only)},
           "block_i": {"norm_attn", "attn": {"q","k","v","o"}, "norm_mlp", "mlp": {"up","down"[,"gate"]}},
           "norm_final", "unembed": {"w": DxV} (untied only)}. No biases.
    """
    k_tok, k_pos, k_unembed, *k_blocks = jax.random.split(key, cfg.n_layers + 3)
    std = cfg.init_std
    # Each block adds two terms to the residual stream; scaling the projections that
    # write them by 1/sqrt(2 n_layers) keeps the stream's variance O(1) at init (GPT-2).
    out_std = std / math.sqrt(2 * cfg.n_layers)
    embed = {"tokens": std * jax.random.normal(k_tok, (cfg.vocab_size, cfg.d_model))}
    if cfg.pos_encoding == "learned":
        embed["positions"] = std * jax.random.normal(k_pos, (cfg.seq_len, cfg.d_model))
    params = {"embed": embed}
    for i, k_block in enumerate(k_blocks):
        k_attn, k_mlp = jax.random.split(k_block)
        params[f"block_{i}"] = {
            "norm_attn": init_norm(cfg.norm, cfg.d_model),
            "attn": init_attention(k_attn, cfg.d_model, std, out_std),
            "norm_mlp": init_norm(cfg.norm, cfg.d_model),
            "mlp": init_mlp(k_mlp, cfg.mlp, cfg.d_model, cfg.d_ff, std, out_std),
        }
    params["norm_final"] = init_norm(cfg.norm, cfg.d_model)
    if not cfg.tie_embeddings:
        params["unembed"] = init_dense(k_unembed, cfg.d_model, cfg.vocab_size, std)
    return params


def embed(params, tokens_BxL, cfg):
    """x = E[tokens] (+ position code for "learned" / "sinusoidal"; RoPE acts inside attention)."""
    length = tokens_BxL.shape[-1]
    if length > cfg.seq_len:
        raise SandboxError(
            f"sequence length {length} exceeds model.seq_len={cfg.seq_len}; "
            "feed at most seq_len tokens (e.g. the last seq_len)"
        )
    x_BxLxD = embed_tokens(params["embed"]["tokens"], tokens_BxL)
    if cfg.pos_encoding == "learned":
        x_BxLxD = x_BxLxD + params["embed"]["positions"][:length]
    elif cfg.pos_encoding == "sinusoidal":
        x_BxLxD = x_BxLxD + sinusoidal_positions(length, cfg.d_model, x_BxLxD.dtype)
    return x_BxLxD


def block(p, x_BxLxD, cfg, mask_LxL):
    """One pre-norm block. Normalizing each branch's input (not the stream itself)
    leaves an identity path from input to output, which keeps deep stacks trainable."""
    h_BxLxD = norm(p["norm_attn"], x_BxLxD, cfg.norm)
    x_BxLxD = x_BxLxD + multi_head_attention(
        p["attn"], h_BxLxD, cfg.n_heads, mask_LxL, rope=cfg.pos_encoding == "rope"
    )
    h_BxLxD = norm(p["norm_mlp"], x_BxLxD, cfg.norm)
    if cfg.mlp == "swiglu":
        return x_BxLxD + swiglu_mlp(p["mlp"], h_BxLxD)
    return x_BxLxD + gelu_mlp(p["mlp"], h_BxLxD, approximate=True)  # GPT-2's tanh GELU


def forward_from_embeddings(params, x_BxLxD, cfg):
    """Logits from input embeddings: the blocks, the final norm, then the unembedding.

    The causal mask lets position t see only positions <= t, so logits[:, t] is a
    prediction of token t+1 from a prefix, and all L predictions train in one pass.
    """
    mask_LxL = causal_mask(x_BxLxD.shape[-2])
    for i in range(cfg.n_layers):
        x_BxLxD = block(params[f"block_{i}"], x_BxLxD, cfg, mask_LxL)
    x_BxLxD = norm(params["norm_final"], x_BxLxD, cfg.norm)
    if cfg.tie_embeddings:
        # Tying reuses E as the output map: a token's input vector is also the
        # direction that scores it, which saves V D parameters.
        return x_BxLxD @ params["embed"]["tokens"].T
    return x_BxLxD @ params["unembed"]["w"]


def apply(params, tokens_BxL, cfg):
    """logits_BxLxV = forward_from_embeddings(embed(tokens)); logits[:, t] scores token t+1."""
    return forward_from_embeddings(params, embed(params, tokens_BxL, cfg), cfg)


def num_params(cfg):
    """The number of scalars in init(key, cfg), counted from shapes (nothing is allocated)."""
    shapes = jax.eval_shape(lambda key: init(key, cfg), jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))
