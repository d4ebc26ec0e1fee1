"""Canonical token sequences, and a sampler that draws only those.

A constrained model spells the text of a match, but not necessarily with the tokens the
tokenizer would choose for that text: "2024" may come out as "20" "24" where BPE encodes
"202" "4". Such non-canonical sequences are unlike anything seen in training (tokenization
bias, Phan et al. 2024). `canonical_rows` keeps, at every step, only tokens after which the
sequence so far is still the canonical encoding of its text (encode(decode(ids)) == ids),
rejecting and redrawing, and backing up where no token is left: a depth-first search.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError
from sandbox.sampling.generate import prompt_buffer, window_logits
from sandbox.sampling.options import DEFAULT, SamplingOptions, sample_next


def is_canonical(tokenizer, ids) -> bool:
    """True iff `ids` is exactly the tokenizer's own encoding of the text they spell (special-token
    text such as "<|endoftext|>" read as ordinary text, as the constrained sampler spells it)."""
    return list(tokenizer.encode_ordinary(tokenizer.decode(ids))) == list(ids)


def canonical_rows(params, cfg, tokenizer, index, tables, prompt_BxP, num_new, key,
                   options: SamplingOptions = DEFAULT, max_draws_per_token: int = 50) -> list[list[int]]:
    """Per row of prompt_BxP, the new token ids (end-of-text excluded) of a canonical match drawn step by
    step among the tokens `tables` (`constrained.mask_tables`) allow: a token that makes the prefix
    non-canonical is removed and the draw repeated; with no token left, back up one token and forbid it."""
    next_SxV, finish_SxV = (np.asarray(t) for t in tables[:2])
    eot, p = tables[3], prompt_BxP.shape[1]
    logits_at = jax.jit(window_logits, static_argnames="cfg")
    draw = jax.jit(sample_next, static_argnames="options")
    rows = []
    for b in range(prompt_BxP.shape[0]):
        buf = prompt_buffer(prompt_BxP[b : b + 1], num_new)
        ids, states, choices = [], [index.initial], []  # choices[i]: (tokens still allowed at i, logits)
        for _ in range(max_draws_per_token * num_new):
            i, state = len(ids), states[-1]
            if i == num_new or (index.is_final(state) and not index.can_continue(state)):
                break
            if len(choices) == i:
                choices.append((np.array(finish_SxV[state] <= num_new - 1 - i), logits_at(params, cfg, buf, p + i)))
            keep_V, logits_1xV = choices[i]
            if not keep_V.any():  # dead end: back up and forbid the token that led here
                if not ids:
                    break
                choices.pop()
                states.pop()
                choices[-1][0][ids.pop()] = False
                continue
            key, draw_key = jax.random.split(key)
            t = int(draw(draw_key, jnp.where(keep_V, logits_1xV, -jnp.inf), options)[0])
            if t == eot:
                break
            if not is_canonical(tokenizer, ids + [t]):
                keep_V[t] = False
                continue
            ids.append(t)
            states.append(int(next_SxV[state, t]))
            buf = buf.at[0, p + i].set(t)
        if not index.is_final(states[-1]):
            raise SandboxError(f"canonical-only sampling found no canonical match (last tried "
                               f"{tokenizer.decode(ids)!r}); sample without --canonical-only")
        rows.append(ids)
    return rows
