"""Generation from the LM: a prompt extended token by token inside one `lax.scan`, plainly or with the
tokens a finite automaton allows (the draw itself: `sampling.options`)."""

import functools

import jax
import jax.numpy as jnp

from sandbox.losses import entropy
from sandbox.nn.transformer import apply
from sandbox.sampling.options import DEFAULT, SamplingOptions, sample_next


def window_logits(params, cfg, buf_BxT, length):
    """Logits for the token after the first `length` tokens of buf, from a window of W = min(seq_len, T)
    tokens ending at the newest one (no KV cache: one compiled shape for every step). While the whole
    buffer fits the context (T <= seq_len) the window is the buffer from position 0, and the unwritten
    zeros after the newest token are invisible to it (causality): a short generation from a long-context
    model costs T tokens per step, not seq_len."""
    window = min(cfg.seq_len, buf_BxT.shape[1])
    start = jnp.maximum(length - window, 0)
    tokens_BxW = jax.lax.dynamic_slice_in_dim(buf_BxT, start, window, axis=1)
    logits_BxWxV = apply(params, tokens_BxW, cfg)
    return jax.lax.dynamic_index_in_dim(logits_BxWxV, length - 1 - start, 1, keepdims=False)


def prompt_buffer(prompt_tokens_BxP, num_new):
    """The prompt followed by num_new zeros, the slots the new tokens are written into."""
    b, p = prompt_tokens_BxP.shape
    return jnp.zeros((b, p + num_new), prompt_tokens_BxP.dtype).at[:, :p].set(prompt_tokens_BxP)


@functools.partial(jax.jit, static_argnames=("cfg", "num_new", "options"))
def generate(params, cfg, prompt_tokens_BxP, num_new, key, options: SamplingOptions = DEFAULT):
    """Extend the prompt by num_new tokens; returns (tokens_Bx(P+N), entropies_BxN).

    Each step runs the model on a fixed window of cfg.seq_len tokens ending at the
    newest one (no KV cache: simple, and one compiled shape for every step), inside
    one `lax.scan`. entropies[:, i] is the entropy in nats of the model's own
    predictive distribution (temperature 1, unfiltered) at step i.
    """
    p = prompt_tokens_BxP.shape[1]
    buf_BxT = prompt_buffer(prompt_tokens_BxP, num_new)

    def step(buf_BxT, inputs):
        i, step_key = inputs
        logits_BxV = window_logits(params, cfg, buf_BxT, p + i)
        new_B = sample_next(step_key, logits_BxV, options).astype(buf_BxT.dtype)
        buf_BxT = jax.lax.dynamic_update_slice_in_dim(buf_BxT, new_B[:, None], p + i, axis=1)
        return buf_BxT, entropy(logits_BxV)

    steps = (jnp.arange(num_new), jax.random.split(key, num_new))
    buf_BxT, entropies_NxB = jax.lax.scan(step, buf_BxT, steps)
    return buf_BxT[:, : p + num_new], entropies_NxB.T


@functools.partial(jax.jit, static_argnames=("cfg", "num_new", "options"))
def generate_constrained(params, cfg, prompt_tokens_BxP, num_new, key, next_SxV, finish_SxV, stop_S, eot,
                         options: SamplingOptions = DEFAULT):
    """Like `generate`, but every step keeps only the tokens a finite automaton allows (state 0 is
    its initial state); returns (tokens_Bx(P+N), lengths_B, states_B).

    Each row carries an automaton state s. With r steps left, token t is kept iff
    finish_SxV[s, t] <= r - 1 (the fewest tokens that complete a match after t; a large number
    when t is not allowed), so every row ends in an accepting state within num_new tokens. The
    dropped tokens' logits become -inf before temperature and filters (greedy takes the best
    allowed token). A row stops after emitting end-of-text `eot` (-1: none) or on reaching a
    state in stop_S (accepting, and no token may follow); after that it writes `eot` (or 0) and
    keeps its state. lengths_B counts the new tokens before the stop, end-of-text excluded.
    """
    b, p = prompt_tokens_BxP.shape
    buf_BxT = prompt_buffer(prompt_tokens_BxP, num_new)
    pad = jnp.maximum(eot, 0).astype(buf_BxT.dtype)

    def step(carry, inputs):
        buf_BxT, state_B, done_B, length_B = carry
        i, step_key = inputs
        logits_BxV = window_logits(params, cfg, buf_BxT, p + i)
        keep_BxV = finish_SxV[state_B] <= num_new - 1 - i
        new_B = sample_next(step_key, jnp.where(keep_BxV, logits_BxV, -jnp.inf), options)
        is_eot_B = new_B == eot
        length_B = length_B + (~done_B & ~is_eot_B)
        state_B = jnp.where(done_B, state_B, next_SxV[state_B, new_B])
        new_B = jnp.where(done_B, pad, new_B).astype(buf_BxT.dtype)
        buf_BxT = jax.lax.dynamic_update_slice_in_dim(buf_BxT, new_B[:, None], p + i, axis=1)
        return (buf_BxT, state_B, done_B | is_eot_B | stop_S[state_B], length_B), None

    init = (buf_BxT, jnp.zeros(b, jnp.int32), jnp.full(b, stop_S[0]), jnp.zeros(b, jnp.int32))
    (buf_BxT, state_B, _, length_B), _ = jax.lax.scan(step, init, (jnp.arange(num_new), jax.random.split(key, num_new)))
    return buf_BxT[:, : p + num_new], length_B, state_B
