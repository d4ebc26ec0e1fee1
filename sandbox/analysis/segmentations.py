"""The LM's probability of every segmentation of a short string.

A language model over tokens gives the text x the marginal probability
    p(x) = sum over segmentations s of x of p(s_1) p(s_2 | s_1) ... p(s_k | s_<k),
of which the canonical segmentation is one term. `segmentation_probabilities` computes every
term (log p(s | context), batched, padded at the end: causality keeps padding out of the scores)
and the share of p(x) the canonical segmentation carries.
"""

import jax
import numpy as np

from sandbox.errors import SandboxError
from sandbox.nn.transformer import apply
from sandbox.text.segmentations import segmentations, token_table

_apply = jax.jit(apply, static_argnames="cfg")


def sequence_logprobs(params, cfg, context_ids, sequences) -> np.ndarray:
    """log p(seq | context) per sequence: the sum over its tokens of log softmax(logits)[token]."""
    c = len(context_ids)
    longest = c + max(map(len, sequences))
    if longest > cfg.seq_len:
        raise SandboxError(f"context plus segmentation is {longest} tokens, more than the model's {cfg.seq_len}")
    tokens_BxL = np.zeros((len(sequences), longest), np.int32)
    for b, seq in enumerate(sequences):
        tokens_BxL[b, : c + len(seq)] = [*context_ids, *seq]
    logp_BxLxV = np.asarray(jax.nn.log_softmax(_apply(params, tokens_BxL, cfg), axis=-1), np.float64)
    return np.array([sum(logp_BxLxV[b, c - 1 + k, t] for k, t in enumerate(seq)) for b, seq in enumerate(sequences)])


def segmentation_probabilities(params, cfg, tokenizer, text: str, context_ids=None, limit: int = 2000) -> dict:
    """Every segmentation of `text` with its log-probability under the LM after `context_ids`
    (default: the end-of-text token; the context must be non-empty so the first token is scored)."""
    if context_ids is None:
        eot = tokenizer.eot_id
        if eot is None:
            raise SandboxError("this tokenizer has no end-of-text token: give a context to condition on")
        context_ids = [eot]
    if not context_ids:
        raise SandboxError("the context must hold at least one token")
    segs = segmentations(text.encode("utf-8"), token_table(tokenizer), limit)
    if not segs:
        raise SandboxError(f"{text!r} cannot be spelled with this tokenizer's tokens")
    logp_S = sequence_logprobs(params, cfg, list(context_ids), segs)
    canonical = list(tokenizer.encode(text))
    marginal = float(np.logaddexp.reduce(logp_S))
    k = segs.index(canonical)
    return {"segmentations": segs, "logprobs": logp_S.tolist(), "canonical_index": k,
            "log_marginal": marginal, "canonical_share": float(np.exp(logp_S[k] - marginal))}


def count_report(tokenizer, text: str, run_dir=None, limit: int = 2000) -> dict:
    """The number of segmentations of `text`, the canonical one, and (given a run trained with this
    tokenizer) the LM's log-probability of each segmentation when there are at most `limit`."""
    from sandbox.text.segmentations import count_segmentations

    data = text.encode("utf-8")
    out = {"bytes": len(data), "count": count_segmentations(data, token_table(tokenizer)),
           "canonical": [tokenizer.decode_bytes([i]) for i in tokenizer.encode(text)]}
    if run_dir is not None:
        from sandbox.analysis.run import load

        run = load(run_dir)
        if run.tokenizer.token_bytes() != tokenizer.token_bytes():
            raise SandboxError(f"run {run_dir} was not trained with this tokenizer: give the run's tokenizer.json")
        out["lm"] = segmentation_probabilities(run.params, run.cfg.model, tokenizer, text, limit=limit)
    return out


def write_word_figure(tokenizer, corpus: str, out_dir, force: bool = False, max_words: int = 5000) -> dict:
    """Figure of the segmentation counts of the corpus's distinct words, in a folder the sandbox owns."""
    from sandbox import plotting, rundir
    from sandbox.text.corpus import load_text
    from sandbox.text.segmentations import figure_word_counts, word_counts

    counts = word_counts(tokenizer, load_text(corpus), max_words)
    with rundir.claim(out_dir, "tokenize count", force=force) as folder:
        plotting.save(figure_word_counts(counts), folder / "segmentations.png")
    top = max(counts, key=counts.get)
    return {"words": len(counts), "most": (top, counts[top]), "median": float(np.median(list(counts.values())))}
