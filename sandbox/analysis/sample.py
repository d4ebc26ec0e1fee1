"""Text from a run: n continuations of a prompt, plain or constrained to match a regex in full.

    run = analysis.load("runs/tiny")
    out = analysis.sample.of_run(run, "The for statement", 64, SamplingOptions(temperature=0.8), n=2)
    out = analysis.sample.of_run(run, "Released on ", 16, regex=r"\\d{4}-\\d\\d-\\d\\d", n=8)
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError
from sandbox.sampling import DEFAULT, SamplingOptions, generate, sample_regex


def prompt_ids(run, prompt: str) -> tuple[list[int], int]:
    """(the prompt's token ids, the last model.seq_len of them; how many were cut off the front)."""
    ids = run.tokenizer.encode(prompt)
    vocab = run.cfg.model.vocab_size
    if not ids or min(ids) < 0 or max(ids) >= vocab:
        raise SandboxError(f"the prompt must be non-empty text within this run's vocabulary of {vocab}")
    keep = run.cfg.model.seq_len
    return ids[-keep:], max(0, len(ids) - keep)


def of_run(run, prompt: str, num_new: int, options: SamplingOptions = DEFAULT, seed: int = 0,
           n: int = 1, regex: str | None = None, canonical_only: bool = False) -> dict:
    """{"prompt_ids", "cut", "texts", "ids", ["entropies" (plain), "matched", "canonical", "canonical_fraction",
    "index_states" (regex)]}: n samples of at most num_new tokens after the prompt, each drawn with `options`;
    with `regex`, each matches it in full (`sampling.sample_regex`); per-token predictive entropies in nats
    (plain)."""
    if num_new <= 0 or n <= 0:
        raise SandboxError(f"the number of tokens ({num_new}) and of samples ({n}) must be positive")
    if canonical_only and regex is None:
        raise SandboxError("canonical-only sampling needs a regex (--regex)")
    options.check_vocab(run.cfg.model.vocab_size)
    ids, cut = prompt_ids(run, prompt)
    key = jax.random.PRNGKey(seed)
    if regex is not None:
        out = sample_regex(run.params, run.cfg.model, run.tokenizer, regex, ids, n, num_new, key, options,
                           canonical_only)
        return {"prompt_ids": ids, "cut": cut, **out}
    prompt_BxP = jnp.asarray(np.tile(np.asarray(ids, np.int32)[None], (n, 1)))
    tokens_BxT, entropies_BxN = generate(run.params, run.cfg.model, prompt_BxP, num_new, key, options)
    rows = [[int(t) for t in row[len(ids):]] for row in np.asarray(tokens_BxT)]
    return {"prompt_ids": ids, "cut": cut, "ids": rows, "texts": [run.tokenizer.decode(r) for r in rows],
            "entropies": np.asarray(entropies_BxN).tolist()}
