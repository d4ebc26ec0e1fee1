"""Regex-constrained generation, side by side in one run, against outlines-core (the `bench` extra):

- index build time: `sandbox.text.constrained.regex_index` vs `outlines_core.Index`, for an IPv4
  regex, an ISO date and a small JSON object, over the same 4,096-token byte-level BPE vocabulary
  (target: under 1 s);
- per-token masking cost on a walk of allowed tokens: the sandbox's mask row + advance vs
  outlines-core's `Guide.write_mask_into` + `advance` (the way Outlines masks a numpy/torch array);
  and, inside the jitted sampler, the extra time per generated token of the masked scan over the
  unmasked one (target: under 0.1 ms per token);
- constrained vs unconstrained sampling throughput, tokens per CPU-second of a small random LM
  (target >= 0.8x).

Times are the best of `--repeats` runs, CPU time for the single-threaded Python/Rust parts; "speed" is
outlines-core's build time over the sandbox's (above 1: the sandbox is faster).
Run: python benchmarks/constrained.py [--repeats 3]
"""

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sandbox.nn.config import ModelConfig  # noqa: E402
from sandbox.nn.transformer import init  # noqa: E402
from sandbox.sampling import generate, generate_constrained, mask_tables  # noqa: E402
from sandbox.text import bpe  # noqa: E402
from sandbox.text.constrained import regex_index  # noqa: E402
from sandbox.text.corpus import load_text  # noqa: E402

PATTERNS = {
    "ipv4": r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)",
    "iso_date": r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
    "json": r'\{"name": "[^"\\]{1,20}", "age": (0|[1-9]\d{0,2}), "admin": (true|false)\}',
}
VOCAB = 4096


def best_of(repeats, fn, clock=time.process_time):
    """(smallest time over `repeats` calls, last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = clock()
        out = fn()
        best = min(best, clock() - t0)
    return best, out


def outlines_index(pattern, tok):
    from outlines_core import Index, Vocabulary

    eot = tok.special_tokens[bpe.ENDOFTEXT]
    vocab = Vocabulary(eot, {t: [i] for i, t in enumerate(tok.vocab)})
    return Index(pattern, vocab)


def walk_cost(index, outlines, tok, steps=2000, seed=0):
    """Seconds per token of (sandbox mask + advance) and (outlines mask + advance) on the same walks."""
    from outlines_core import Guide

    rng = random.Random(seed)
    walks, state = [], index.initial
    while len(walks) < steps:
        allowed = np.flatnonzero(index.allowed(state)[: len(tok.vocab)])
        if not len(allowed) or (index.is_final(state) and rng.random() < 0.3):
            walks.append(None)
            state = index.initial
            continue
        t = int(rng.choice(list(allowed)))
        walks.append(t)
        state = index.advance(state, t)

    def ours():
        s = index.initial
        for t in walks:
            mask_V = index.allowed(s)
            s = index.initial if t is None else index.advance(s, t)
        return mask_V

    mask = np.zeros(-(-tok.vocab_size // 32), np.int32)

    def theirs():
        guide = Guide(outlines)
        for t in walks:
            guide.write_mask_into(mask.ctypes.data, mask.size, 4)
            if t is None:
                guide = Guide(outlines)
            else:
                guide.advance(t)
        return mask

    return best_of(3, ours)[0] / steps, best_of(3, theirs)[0] / steps


def jitted_mask_cost(tables, repeats, batch=32, steps=256):
    """Seconds per token of the masking alone inside a jitted scan: gather the finish row of each
    state, compare, mask the logits, advance the state; minus the same scan without the mask."""
    next_SxV, finish_SxV, _, _ = tables
    logits_BxV = jax.random.normal(jax.random.PRNGKey(0), (batch, next_SxV.shape[1]))

    def scan(masked):
        def body(state_B, i):
            z_BxV = jnp.where(finish_SxV[state_B] <= steps - 1 - i, logits_BxV, -jnp.inf) if masked else logits_BxV
            t_B = jnp.argmax(z_BxV + i, axis=-1)
            return (next_SxV[state_B, t_B] if masked else state_B), t_B
        return jax.jit(lambda: jax.lax.scan(body, jnp.zeros(batch, jnp.int32), jnp.arange(steps))[1])

    with_mask, without = scan(True), scan(False)
    with_mask().block_until_ready(), without().block_until_ready()
    t_with = best_of(repeats, lambda: with_mask().block_until_ready())[0]
    t_without = best_of(repeats, lambda: without().block_until_ready())[0]
    return (t_with - t_without) / (batch * steps)


def sampling_rates(tok, index, repeats, batch=32, num_new=32):
    """(tokens/s unconstrained, tokens/s constrained) of a 2-layer random LM, after compiling."""
    cfg = ModelConfig(vocab_size=tok.vocab_size, seq_len=64, d_model=64, n_layers=2, n_heads=4, d_ff=256)
    params = init(jax.random.PRNGKey(0), cfg)
    prompt = jnp.asarray(np.tile(np.asarray(tok.encode("Date: "), np.int32), (batch, 1)))
    tables = mask_tables(index, cfg.vocab_size)
    key = jax.random.PRNGKey(1)
    plain = lambda: generate(params, cfg, prompt, num_new, key)[0].block_until_ready()
    masked = lambda: generate_constrained(params, cfg, prompt, num_new, key, *tables)[0].block_until_ready()
    plain(), masked()  # compile
    t_plain = t_masked = float("inf")
    for _ in range(repeats):  # interleaved, in CPU time (all threads), so other jobs skew neither side
        t_plain = min(t_plain, best_of(1, plain)[0])
        t_masked = min(t_masked, best_of(1, masked)[0])
    return batch * num_new / t_plain, batch * num_new / t_masked


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    tok = bpe.train(load_text("pydoc"), VOCAB, pattern="gpt4")
    print(f"BPE vocab {tok.vocab_size} trained in {time.perf_counter() - t0:.1f} s\n")
    header = f"{'pattern':10s} {'states':>6s} {'build sandbox':>14s} {'build outlines':>15s} {'speed':>6s}" \
             f" {'mask+step sandbox':>18s} {'mask+step outlines':>19s}"
    print(header)
    indexes = {}
    for name, pattern in PATTERNS.items():
        t_ours, index = best_of(args.repeats, lambda p=pattern: regex_index(p, tok))
        t_theirs, theirs = best_of(args.repeats, lambda p=pattern: outlines_index(p, tok))
        step_ours, step_theirs = walk_cost(index, theirs, tok)
        indexes[name] = index
        print(f"{name:10s} {index.dfa.num_states:6d} {t_ours * 1e3:11.1f} ms {t_theirs * 1e3:12.1f} ms "
              f"{t_theirs / t_ours:5.2f}x {step_ours * 1e6:15.2f} us {step_theirs * 1e6:16.2f} us")
    print()
    for name in ("iso_date", "json"):
        rate_plain, rate_masked = sampling_rates(tok, indexes[name], args.repeats)
        mask_cost = jitted_mask_cost(mask_tables(indexes[name], tok.vocab_size), args.repeats)
        print(f"sampling ({name}): unconstrained {rate_plain:7.0f} tok/s, constrained {rate_masked:7.0f} tok/s, "
              f"ratio {rate_masked / rate_plain:.2f}x; masking alone in a jitted scan {mask_cost * 1e3:.4f} ms/token")


if __name__ == "__main__":
    main()
