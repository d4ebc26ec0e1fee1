"""The shape of a decoder-only transformer LM, as a frozen (hashable) dataclass.

Being frozen and hashable, a `ModelConfig` can be passed to `jax.jit` as a static
argument: every field fixes an array shape or a code path, never a value.
"""

import dataclasses

from sandbox import validate
from sandbox.errors import SandboxError

POS_ENCODINGS = ("learned", "sinusoidal", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and architectural choices of the LM (letters: V, L, D, H, F)."""

    vocab_size: int = 256  # V
    seq_len: int = 128  # L, the longest context the model is trained on
    d_model: int = 64  # D, the residual-stream width
    n_layers: int = 2
    n_heads: int = 4  # H; head width K = D / H
    n_kv_heads: int | None = None  # key/value heads; None: H (multi-head), fewer: grouped-query attention
    d_ff: int = 256  # F, the MLP hidden width
    pos_encoding: str = "learned"  # "learned" | "sinusoidal" | "rope"
    rope_base: float = 10000.0  # RoPE's theta_i = base^(-2i/K)
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5  # the epsilon under every norm's square root
    mlp: str = "gelu"  # "gelu" | "swiglu"
    tie_embeddings: bool = True  # unembed with embed.tokens.T
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "d_ff"):
            validate.positive_int("model", name, getattr(self, name))
        for name, choices in (("pos_encoding", POS_ENCODINGS), ("norm", NORMS), ("mlp", MLPS)):
            validate.one_of("model", name, getattr(self, name), choices)
        if self.d_model % self.n_heads:
            raise SandboxError(
                f"model.d_model={self.d_model} must be divisible by model.n_heads={self.n_heads}"
            )
        if self.n_kv_heads is not None:
            validate.positive_int("model", "n_kv_heads", self.n_kv_heads)
            if self.n_heads % self.n_kv_heads:
                raise SandboxError(f"model.n_kv_heads={self.n_kv_heads} must divide model.n_heads={self.n_heads} "
                                   "(each key/value head serves n_heads / n_kv_heads query heads)")
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2:
            raise SandboxError(
                f"model.pos_encoding='rope' needs an even head width d_model/n_heads, "
                f"got {self.d_model}/{self.n_heads}={self.d_model // self.n_heads}"
            )
        if not isinstance(self.tie_embeddings, bool):
            raise SandboxError(f"model.tie_embeddings must be true or false, got {self.tie_embeddings!r}")
        for name in ("init_std", "rope_base", "norm_eps"):
            validate.positive_number("model", name, getattr(self, name))

    @property
    def head_dim(self) -> int:
        """K = D / H, the width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads: n_kv_heads, or H when unset (plain multi-head attention)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads
