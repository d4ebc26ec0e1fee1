"""Every layer's and head's attention weights, read off the models without changing their outputs.

The forward pass is replayed layer by layer with the models' own functions (`block`, `layer`,
`unembed`, `pool`); before each layer the same query/key projections (`project_heads`) and the
same softmax (`attention_weights`) the layer uses give its weights. The outputs returned are
those of the replayed pass, which equal `transformer.apply` / `minilm.encode` bit for bit (tested).
"""

import jax.numpy as jnp

from sandbox.nn.attention import attention_weights, causal_mask, project_heads
from sandbox.nn.norms import norm
from sandbox.nn.transformer import attention_options, block, embed, unembed
from sandbox.pretrained import minilm


def lm_attention(params, tokens_BxL, cfg):
    """(logits_BxLxV, att_NxBxHxLxL) of the decoder LM: N layers, each head's row-stochastic,
    lower-triangular matrix (query t attends to keys s <= t)."""
    x_BxLxD = embed(params, tokens_BxL, cfg)
    mask_LxL = causal_mask(x_BxLxD.shape[-2])
    att = []
    for i in range(cfg.n_layers):
        p = params[f"block_{i}"]
        h_BxLxD = norm(p["norm_attn"], x_BxLxD, cfg.norm, cfg.norm_eps)
        q_BxHxLxK, k_BxHxLxK, _ = project_heads(p["attn"], h_BxLxD, cfg.n_heads, **attention_options(cfg))
        att.append(attention_weights(q_BxHxLxK, k_BxHxLxK, mask_LxL))
        x_BxLxD = block(p, x_BxLxD, cfg, mask_LxL)
    return unembed(params, x_BxLxD, cfg), jnp.stack(att)


def minilm_attention(params, ids_BxL, mask_BxL, cfg):
    """(emb_BxD, att_NxBxHxLxL) of MiniLM: bidirectional attention over the real (unpadded) tokens."""
    x_BxLxD = minilm.embed_tokens(params["embed"], ids_BxL, cfg)
    keys_Bx1x1xL = mask_BxL[:, None, None, :].astype(bool)
    att = []
    for i in range(cfg.n_layers):
        p = params[f"layer_{i}"]
        q_BxHxLxK, k_BxHxLxK, _ = project_heads(p["attn"], x_BxLxD, cfg.n_heads)
        att.append(attention_weights(q_BxHxLxK, k_BxHxLxK, keys_Bx1x1xL))
        x_BxLxD = minilm.layer(p, x_BxLxD, mask_BxL, cfg)
    return minilm.pool(x_BxLxD, mask_BxL), jnp.stack(att)
