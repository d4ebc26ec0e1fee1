"""How the next token is drawn from the logits: temperature, top-k and nucleus (top-p) filters.

A filter maps logits to logits, setting the tokens it drops to -inf, so filters compose and
`jax.random.categorical` samples from what is left. `SamplingOptions` carries the three together;
being frozen and hashable it is a static argument of the jitted generators.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from sandbox.errors import SandboxError
from sandbox.losses import softmax


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """temperature T >= 0 (0: greedy argmax), top_k (keep the k most likely), top_p (nucleus mass)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise SandboxError(f"temperature (--temperature) must be a finite number >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k <= 0:
            raise SandboxError(f"top_k (--top-k) must be positive, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise SandboxError(f"top_p (--top-p) must lie in (0, 1], got {self.top_p}")

    def check_vocab(self, vocab_size: int) -> None:
        if self.top_k is not None and self.top_k > vocab_size:
            raise SandboxError(f"top_k (--top-k) {self.top_k} exceeds the vocabulary size {vocab_size}")


DEFAULT = SamplingOptions()  # temperature 1, no filter: a draw from the model's own distribution
GREEDY = SamplingOptions(temperature=0.0)


def apply_temperature(logits_NxV, temperature):
    """z / T: T < 1 sharpens p toward the argmax, T > 1 flattens it toward uniform (T > 0)."""
    return logits_NxV / temperature


def top_k_filter(logits_NxV, k):
    """Keep exactly the k largest logits (ties broken by index), set the rest to -inf."""
    _, idx_NxK = jax.lax.top_k(logits_NxV, k)
    keep_NxV = jnp.any(jax.nn.one_hot(idx_NxK, logits_NxV.shape[-1], dtype=bool), axis=-2)
    return jnp.where(keep_NxV, logits_NxV, -jnp.inf)


def top_p_filter(logits_NxV, p):
    """Nucleus filter (Holtzman et al., 2019): keep the smallest set of most likely
    tokens whose total probability is >= p, set the rest to -inf.

    Sorted by decreasing probability, token i is kept iff the mass strictly before it
    is < p; the most likely token is always kept.
    """
    order_NxV = jnp.argsort(-logits_NxV, axis=-1)
    probs_sorted_NxV = jnp.take_along_axis(softmax(logits_NxV), order_NxV, axis=-1)
    mass_before_NxV = jnp.cumsum(probs_sorted_NxV, axis=-1) - probs_sorted_NxV
    keep_sorted_NxV = mass_before_NxV < p
    keep_NxV = jnp.take_along_axis(keep_sorted_NxV, jnp.argsort(order_NxV, axis=-1), axis=-1)
    return jnp.where(keep_NxV, logits_NxV, -jnp.inf)


def sample_next(key, logits_BxV, options: SamplingOptions = DEFAULT):
    """One token per row: argmax if options.temperature == 0 (greedy), else a draw from
    softmax(filters(z / T))."""
    if options.temperature == 0:
        return jnp.argmax(logits_BxV, axis=-1)
    z_BxV = apply_temperature(logits_BxV, jnp.asarray(options.temperature, logits_BxV.dtype))
    if options.top_k is not None:
        z_BxV = top_k_filter(z_BxV, options.top_k)
    if options.top_p is not None:
        z_BxV = top_p_filter(z_BxV, options.top_p)
    return jax.random.categorical(key, z_BxV, axis=-1)
