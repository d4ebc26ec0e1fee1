"""Regex-constrained sampling from the LM, and how often its token sequences are canonical.

The pattern's token index (`text.constrained.regex_index`) becomes arrays the jitted sampler masks
the logits with (`mask_tables`), so every sample matches in full. `sample_regex` reports the fraction
of samples that are the tokenizer's canonical encoding of their text; `canonical_only=True` draws only
those (`sampling.canonical`).
"""

import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError
from sandbox.sampling.canonical import canonical_rows, is_canonical
from sandbox.sampling.generate import generate_constrained
from sandbox.sampling.options import DEFAULT, SamplingOptions
from sandbox.text.constrained import TokenIndex, regex_index


def mask_tables(index: TokenIndex, vocab_size: int):
    """The index as arrays padded to the model's vocabulary: (next_SxV, finish_SxV, stop_S, eot)."""
    finish_SxV = index.finish_SxV()
    extra = vocab_size - finish_SxV.shape[1]
    if extra < 0:
        raise SandboxError(f"the tokenizer has {finish_SxV.shape[1]} tokens but the model only {vocab_size}")
    finish_SxV = np.pad(finish_SxV, ((0, 0), (0, extra)), constant_values=np.iinfo(np.int32).max // 2)
    next_SxV = np.pad(np.maximum(index.next_SxV, 0), ((0, 0), (0, extra)))
    stop_S = np.array([index.is_final(s) and not index.can_continue(s) for s in range(len(index.steps_S))])
    return jnp.asarray(next_SxV), jnp.asarray(finish_SxV), jnp.asarray(stop_S), -1 if index.eot is None else index.eot


def sample_regex(params, cfg, tokenizer, pattern: str, prompt_ids, n: int, num_new: int, key,
                 options: SamplingOptions = DEFAULT, canonical_only: bool = False) -> dict:
    """n samples of at most num_new tokens after prompt_ids, each matching `pattern` in full.

    Returns {"texts", "ids", "matched", "canonical", "canonical_fraction", "index_states"}; matched
    is checked on the text's bytes with the automaton. SandboxError if no match fits in num_new tokens.
    """
    index = regex_index(pattern, tokenizer)
    need = int(index.steps_S[index.initial])
    if need > num_new:
        raise SandboxError(f"regex {pattern!r} needs at least {need} tokens of this tokenizer; "
                           f"allow more (got {num_new})")
    tables = mask_tables(index, cfg.vocab_size)
    prompt_BxP = jnp.asarray(np.tile(np.asarray(prompt_ids, np.int32)[None, -cfg.seq_len :], (n, 1)))
    if canonical_only:
        rows = canonical_rows(params, cfg, tokenizer, index, tables, prompt_BxP, num_new, key, options)
    else:
        tokens_BxT, length_B, _ = generate_constrained(params, cfg, prompt_BxP, num_new, key, *tables, options)
        p = prompt_BxP.shape[1]
        rows = [[int(t) for t in row[p : p + int(k)]] for row, k in zip(np.asarray(tokens_BxT), np.asarray(length_B))]
    spelled = tokenizer.token_bytes()
    canonical = [is_canonical(tokenizer, ids) for ids in rows]
    return {
        "texts": [tokenizer.decode(ids) for ids in rows], "ids": rows, "index_states": index.dfa.num_states,
        "matched": [index.dfa.fullmatch(b"".join(spelled[t] for t in ids)) for ids in rows],
        "canonical": canonical, "canonical_fraction": float(np.mean(canonical)) if rows else 0.0,
    }
