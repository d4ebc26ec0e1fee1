"""Looking inside a tokenizer: compression statistics and one word's encoding, merge by merge.

For a text encoded as tokens t_1..t_N with unigram frequencies p(v) = count(v) / N:
- bytes per token = (UTF-8 bytes of the text) / N, the compression ratio;
- unigram entropy H = -sum_v p(v) log2 p(v) bits per token (H / bytes-per-token bounds the
  bits per byte a model that ignores context can reach);
- Zipf slope s: least-squares fit of log f_r = c + s log r over the rank-frequency curve
  (f_r the r-th largest count); natural language gives s near -1.
"""

import numpy as np

from sandbox.errors import SandboxError
from sandbox.text.bpe_encode import merge_piece
from sandbox.text.pretokenize import split


def stats(tok, text: str) -> dict:
    """Token statistics of `text` under tokenizer `tok` (special tokens read as plain text)."""
    ids = tok.encode(text, disallowed_special=())
    if not ids:
        raise SandboxError("the text is empty: give some text to measure the tokenizer on")
    _, counts = np.unique(np.asarray(ids), return_counts=True)
    f_r = np.sort(counts)[::-1].astype(np.float64)
    p = f_r / f_r.sum()
    rank = np.arange(1, len(f_r) + 1, dtype=np.float64)
    slope = float(np.polyfit(np.log(rank), np.log(f_r), 1)[0]) if len(f_r) > 1 else float("nan")
    n_bytes = len(text.encode("utf-8", errors="surrogatepass"))
    return {
        "n_bytes": n_bytes,
        "n_tokens": len(ids),
        "bytes_per_token": n_bytes / len(ids),
        "unigram_entropy_bits": float(-(p * np.log2(p)).sum()),
        "zipf_slope": slope,
        "distinct_tokens": len(f_r),
        "vocab_size": tok.vocab_size,
    }


def explain(tok, word: str) -> list[dict]:
    """How `tok` encodes `word`: for each piece of the split pattern, the merges applied in
    order (lowest rank first, leftmost on ties), each with the parts after it, and the ids.

    Under tiktoken's rule a piece that is itself a token is encoded as that token (the whole-piece
    lookup; `whole_piece` is True), even where the merges would have stopped elsewhere; under the
    merge-list rule the merges are the listed pairs, earliest first.
    """
    out = []
    for piece in split(word, tok.pattern):
        data = tok.piece_bytes(piece, errors="replace")
        cuts = list(range(len(data) + 1))
        steps = []

        def on_merge(i, m, e, data=data, cuts=cuts, steps=steps):
            cuts.remove(m)
            steps.append(
                {
                    "left": data[i:m],
                    "right": data[m:e],
                    "token": tok.ranks[data[i:e]],
                    "parts": [data[a:b] for a, b in zip(cuts, cuts[1:])],
                }
            )

        merged = merge_piece(data, tok.ranks, on_merge, tok.merge_ranks)
        whole = tok.whole_pieces and data in tok.ranks
        out.append(
            {"piece": piece, "steps": steps, "whole_piece": whole, "ids": [tok.ranks[data]] if whole else merged}
        )
    return out
