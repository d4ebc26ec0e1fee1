"""A decoder-only transformer LM (GPT-2 shape, pre-norm), readable top to bottom.

    logits = unembed(norm_final(blocks(embed(tokens))))
    block:  x <- x + attn(norm_attn(x), causal);  x <- x + mlp(norm_mlp(x))

The config's options span GPT-2 (learned positions, LayerNorm, GELU) and LLaMA (RoPE with its
base, RMSNorm with its epsilon, SwiGLU, grouped-query attention with n_kv_heads < n_heads).

Parameters are one plain nested dict (see `init`), so `jax.grad`, `jax.hessian`,
`ravel_pytree` and optax see the whole model directly. `apply` is split into
`embed` and `forward_from_embeddings` so Jacobians of the logits can be taken with
respect to the input embeddings.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from sandbox.errors import SandboxError
from sandbox.nn.attention import causal_mask, multi_head_attention
from sandbox.nn.embedding import embed_tokens, sinusoidal_positions
from sandbox.nn.linear import matmul
from sandbox.nn.mlp import gelu_mlp, swiglu_mlp
from sandbox.nn.norms import norm


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """How one parameter starts: N(0, std^2) if std > 0, else filled with `fill`."""

    shape: tuple
    std: float = 0.0
    fill: float = 0.0


def param_spec(cfg):
    """The parameter tree with a `_Leaf` (shape and initializer) at every leaf.

    {"embed": {"tokens": VxD, "positions": LxD (learned only)},
     "block_i": {"norm_attn", "attn": {"q","k","v","o"}, "norm_mlp", "mlp": {"up","down"[,"gate"]}},
     "norm_final", "unembed": {"w": DxV} (untied only)}. Dense maps are {"w": Din x Dout}; k and v
    are D x G K with G = cfg.kv_heads key/value heads; norms are {"scale"[, "bias"]}. The LM has no biases.
    """
    d, f, std = cfg.d_model, cfg.d_ff, cfg.init_std
    d_kv = cfg.kv_heads * cfg.head_dim
    # Each block adds two terms to the residual stream; scaling the projections that
    # write them by 1/sqrt(2 n_layers) keeps the stream's variance O(1) at init (GPT-2).
    out_std = std / math.sqrt(2 * cfg.n_layers)

    def dense_spec(d_in, d_out, s=std):
        return {"w": _Leaf((d_in, d_out), s)}

    def norm_spec():
        if cfg.norm == "layernorm":
            return {"scale": _Leaf((d,), fill=1.0), "bias": _Leaf((d,))}
        return {"scale": _Leaf((d,), fill=1.0)}

    spec = {"embed": {"tokens": _Leaf((cfg.vocab_size, d), std)}}
    if cfg.pos_encoding == "learned":
        spec["embed"]["positions"] = _Leaf((cfg.seq_len, d), std)
    for i in range(cfg.n_layers):
        mlp = {"up": dense_spec(d, f), "down": dense_spec(f, d, out_std)}
        if cfg.mlp == "swiglu":
            mlp["gate"] = dense_spec(d, f)
        spec[f"block_{i}"] = {
            "norm_attn": norm_spec(),
            "attn": {
                "q": dense_spec(d, d),
                "k": dense_spec(d, d_kv),
                "v": dense_spec(d, d_kv),
                "o": dense_spec(d, d, out_std),
            },
            "norm_mlp": norm_spec(),
            "mlp": mlp,
        }
    spec["norm_final"] = norm_spec()
    if not cfg.tie_embeddings:
        spec["unembed"] = dense_spec(d, cfg.vocab_size)
    return spec


@functools.partial(jax.jit, static_argnames=("cfg", "dtype"))
def init(key, cfg, dtype=jnp.float32):
    """Random parameters for cfg (a `ModelConfig`), laid out as in `param_spec`.

    All Gaussian entries come from one draw of N(0, 1), cut into pieces and scaled:
    one random-number kernel compiles far faster than one per weight matrix. Jitted
    (cfg and dtype static), so building the tree is one compiled program.
    """
    leaves, treedef = jax.tree_util.tree_flatten(param_spec(cfg))
    sizes = [math.prod(leaf.shape) if leaf.std else 0 for leaf in leaves]
    z = jax.random.normal(key, (sum(sizes),), dtype)
    arrays, offset = [], 0
    for leaf, size in zip(leaves, sizes):
        if leaf.std:
            arrays.append(leaf.std * z[offset : offset + size].reshape(leaf.shape))
        else:
            arrays.append(jnp.full(leaf.shape, leaf.fill, dtype))
        offset += size
    return jax.tree_util.tree_unflatten(treedef, arrays)


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


def attention_options(cfg) -> dict:
    """The keyword arguments of `multi_head_attention` / `project_heads` that cfg fixes: RoPE and
    its base, the number of key/value heads."""
    return {"rope": cfg.pos_encoding == "rope", "rope_base": cfg.rope_base, "n_kv_heads": cfg.kv_heads}


def block(p, x_BxLxD, cfg, mask_LxL):
    """One pre-norm block. Normalizing each branch's input (not the stream itself)
    leaves an identity path from input to output, which keeps deep stacks trainable."""
    h_BxLxD = norm(p["norm_attn"], x_BxLxD, cfg.norm, cfg.norm_eps)
    x_BxLxD = x_BxLxD + multi_head_attention(p["attn"], h_BxLxD, cfg.n_heads, mask_LxL, **attention_options(cfg))
    h_BxLxD = norm(p["norm_mlp"], x_BxLxD, cfg.norm, cfg.norm_eps)
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
    return unembed(params, x_BxLxD, cfg)


def unembed(params, x_BxLxD, cfg):
    """Logits from the last residual stream: the final norm, then the (tied) unembedding."""
    x_BxLxD = norm(params["norm_final"], x_BxLxD, cfg.norm, cfg.norm_eps)
    if cfg.tie_embeddings:
        # Tying reuses E as the output map: a token's input vector is also the
        # direction that scores it, which saves V D parameters.
        return matmul(x_BxLxD, params["embed"]["tokens"].T)
    return matmul(x_BxLxD, params["unembed"]["w"])


def apply(params, tokens_BxL, cfg):
    """logits_BxLxV = forward_from_embeddings(embed(tokens)); logits[:, t] scores token t+1."""
    return forward_from_embeddings(params, embed(params, tokens_BxL, cfg), cfg)


def param_groups(params) -> dict:
    """{group: [subtree path]}: the token/position tables (and an untied unembedding) are embeddings,
    each block's "attn" attention and "mlp" MLP, every norm a norm (see `sandbox.nn.groups`)."""
    layers = sorted((k for k in params if k.startswith("block_")), key=lambda k: int(k.split("_")[1]))
    return {
        "embeddings": ["embed"] + (["unembed"] if "unembed" in params else []),
        "attention": [f"{b}/attn" for b in layers],
        "mlp": [f"{b}/mlp" for b in layers],
        "norms": [f"{b}/{n}" for b in layers for n in ("norm_attn", "norm_mlp")] + ["norm_final"],
    }


def num_params(cfg):
    """The number of scalars in init(key, cfg), counted from `param_spec` (nothing is allocated)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(param_spec(cfg)))
