"""Regex-constrained sampling from the LM, and how often its token sequences are canonical.

A constrained model spells the text of a match, but not necessarily with the tokens the
tokenizer would choose for that text: "2024" may come out as "20" "24" where BPE encodes
"202" "4". Such non-canonical sequences are unlike anything seen in training (tokenization
bias, Phan et al. 2024), so `sample_regex` reports the fraction of canonical samples, and
`canonical_only=True` keeps, at every step, only tokens after which the sequence so far is still
the canonical encoding of its text (encode(decode(ids)) == ids), rejecting and redrawing.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError
from sandbox.sampling import generate_constrained, prompt_buffer, sample_next, window_logits
from sandbox.text.constrained import TokenIndex, regex_index


def is_canonical(tokenizer, ids) -> bool:
    """True iff `ids` is exactly the tokenizer's own encoding of the text they spell (special-token
    text such as "<|endoftext|>" read as ordinary text, as the constrained sampler spells it)."""
    return list(tokenizer.encode_ordinary(tokenizer.decode(ids))) == list(ids)


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


def _canonical_rows(params, cfg, tokenizer, index, tables, prompt_BxP, num_new, key, temperature, top_k, top_p,
                    max_draws_per_token: int = 50):
    """Step by step: draw among the allowed tokens; a token that makes the prefix non-canonical is
    removed and the draw repeated; when no token is left, back up one token and forbid it there
    (depth-first search). Returns per row the new token ids (end-of-text excluded)."""
    next_SxV, finish_SxV = (np.asarray(t) for t in tables[:2])
    eot, p = tables[3], prompt_BxP.shape[1]
    logits_at = jax.jit(window_logits, static_argnames="cfg")
    draw = jax.jit(sample_next, static_argnames="top_k")
    rows = []
    for b in range(prompt_BxP.shape[0]):
        buf = prompt_buffer(prompt_BxP[b : b + 1], num_new, cfg.seq_len)
        ids, states, options = [], [index.initial], []  # options[i]: (tokens still allowed at i, logits)
        for _ in range(max_draws_per_token * num_new):
            i, state = len(ids), states[-1]
            if i == num_new or (index.is_final(state) and not index.can_continue(state)):
                break
            if len(options) == i:
                options.append((np.array(finish_SxV[state] <= num_new - 1 - i), logits_at(params, cfg, buf, p + i)))
            keep_V, logits_1xV = options[i]
            if not keep_V.any():  # dead end: back up and forbid the token that led here
                if not ids:
                    break
                options.pop()
                states.pop()
                options[-1][0][ids.pop()] = False
                continue
            key, draw_key = jax.random.split(key)
            t = int(draw(draw_key, jnp.where(keep_V, logits_1xV, -jnp.inf), temperature, top_k, top_p)[0])
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


def sample_regex(params, cfg, tokenizer, pattern: str, prompt_ids, n: int, num_new: int, key,
                 temperature=1.0, top_k=None, top_p=None, canonical_only: bool = False) -> dict:
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
        rows = _canonical_rows(params, cfg, tokenizer, index, tables, prompt_BxP, num_new, key,
                               temperature, top_k, top_p)
    else:
        tokens_BxT, length_B, _ = generate_constrained(params, cfg, prompt_BxP, num_new, key, *tables,
                                                       temperature, top_k, top_p)
        p = prompt_BxP.shape[1]
        rows = [[int(t) for t in row[p : p + int(k)]] for row, k in zip(np.asarray(tokens_BxT), np.asarray(length_B))]
    spelled = tokenizer.token_bytes()
    canonical = [is_canonical(tokenizer, ids) for ids in rows]
    return {
        "texts": [tokenizer.decode(ids) for ids in rows], "ids": rows, "index_states": index.dfa.num_states,
        "matched": [index.dfa.fullmatch(b"".join(spelled[t] for t in ids)) for ids in rows],
        "canonical": canonical, "canonical_fraction": float(np.mean(canonical)) if rows else 0.0,
    }


def sample_run(run_dir, pattern: str, prompt: str, n: int = 8, num_new: int = 64, seed: int = 0,
               temperature=1.0, top_k=None, top_p=None, canonical_only: bool = False, step=None) -> dict:
    """`sample_regex` on the checkpoint of a trained run, with its own tokenizer."""
    from sandbox.text.tokenizer import run_tokenizer
    from sandbox.train.checkpoint import load_run

    cfg, params, _ = load_run(run_dir, step)
    tokenizer = run_tokenizer(cfg.data, run_dir)
    prompt_ids = tokenizer.encode(prompt)
    if not prompt_ids or max(prompt_ids) >= cfg.model.vocab_size:
        raise SandboxError(f"the prompt must be non-empty text within this run's vocabulary of {cfg.model.vocab_size}")
    return sample_regex(params, cfg.model, tokenizer, pattern, prompt_ids, n, num_new, jax.random.PRNGKey(seed),
                        temperature, top_k, top_p, canonical_only)
