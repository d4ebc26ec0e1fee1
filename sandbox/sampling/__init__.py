"""Generation: the draw (`options`: temperature, top-k, top-p), plain generation (`generate`), generation
constrained by a regex's token index (`constrained`) and its canonical-only search (`canonical`).

    from sandbox import sampling
    opts = sampling.SamplingOptions(temperature=0.8, top_p=0.9)
    tokens_BxT, entropies_BxN = sampling.generate(params, model_cfg, prompt_BxP, 64, key, opts)
    out = sampling.sample_regex(params, model_cfg, tokenizer, r"\\d{4}", prompt_ids, n=8, num_new=8, key=key)
"""

from sandbox.sampling.canonical import canonical_rows, is_canonical
from sandbox.sampling.constrained import mask_tables, sample_regex
from sandbox.sampling.generate import generate, generate_constrained, prompt_buffer, window_logits
from sandbox.sampling.options import (
    DEFAULT,
    GREEDY,
    SamplingOptions,
    apply_temperature,
    sample_next,
    top_k_filter,
    top_p_filter,
)

__all__ = [
    "DEFAULT", "GREEDY", "SamplingOptions", "apply_temperature", "canonical_rows", "generate", "generate_constrained",
    "is_canonical", "mask_tables", "prompt_buffer", "sample_next", "sample_regex", "top_k_filter", "top_p_filter",
    "window_logits",
]
