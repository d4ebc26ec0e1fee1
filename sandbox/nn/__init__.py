"""Linear algebra of the LM: embeddings, attention, MLPs, norms, the transformer."""

from sandbox.nn.attention import (
    causal_mask,
    multi_head_attention,
    scaled_dot_product_attention,
)
from sandbox.nn.config import ModelConfig
from sandbox.nn.embedding import embed_tokens, rope, sinusoidal_positions
from sandbox.nn.linear import dense, init_dense
from sandbox.nn.mlp import gelu, gelu_mlp, swiglu_mlp
from sandbox.nn.norms import init_layer_norm, init_rms_norm, layer_norm, norm, rms_norm
from sandbox.nn.transformer import apply, embed, forward_from_embeddings, init, num_params, param_spec

__all__ = [
    "ModelConfig",
    "apply",
    "causal_mask",
    "dense",
    "embed",
    "embed_tokens",
    "forward_from_embeddings",
    "gelu",
    "gelu_mlp",
    "init",
    "init_dense",
    "init_layer_norm",
    "init_rms_norm",
    "layer_norm",
    "multi_head_attention",
    "norm",
    "num_params",
    "param_spec",
    "rms_norm",
    "rope",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
    "swiglu_mlp",
]
