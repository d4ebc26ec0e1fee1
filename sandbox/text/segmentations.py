"""Counting tokenizations: the ways a string can be cut into vocabulary tokens.

The token lattice of a byte string x_1..x_n has a node per position 0..n and an edge i -> j for
every token equal to x_{i+1}..x_j. Segmentations are the paths 0 -> n, so their number obeys
    N(0) = 1,   N(j) = sum over tokens t ending at j of N(j - |t|),
a dynamic program in O(n * longest token) with exact (unbounded) Python integers: with the
two tokens "a" and "aa", "a"*n has Fibonacci(n + 1) segmentations. A BPE tokenizer outputs
one of them, the canonical one; a model can assign probability to all the others.
"""

import math

import numpy as np

from sandbox.errors import SandboxError


def token_table(tokenizer) -> dict[bytes, int]:
    """bytes -> id of every ordinary token (special tokens are not text) of a `tokenizer.Tokenizer`."""
    return {t: i for i, t in enumerate(tokenizer.token_bytes()) if t}


def lattice(data: bytes, table: dict[bytes, int]) -> list[list[tuple[int, int]]]:
    """ends[j] = [(i, id), ...]: the tokens spanning data[i:j]."""
    longest = max(map(len, table))
    return [[(i, table[data[i:j]]) for i in range(max(0, j - longest), j) if data[i:j] in table]
            for j in range(len(data) + 1)]


def count_segmentations(data: bytes, table: dict[bytes, int]) -> int:
    """N(n): the number of token sequences that spell `data` exactly (0 if none)."""
    counts = [1] + [0] * len(data)
    for j, edges in enumerate(lattice(data, table)):
        if j:
            counts[j] = sum(counts[i] for i, _ in edges)
    return counts[-1]


def segmentations(data: bytes, table: dict[bytes, int], limit: int = 10_000) -> list[list[int]]:
    """Every token sequence spelling `data`, as id lists; SandboxError if there are more than `limit`."""
    total = count_segmentations(data, table)
    if total > limit:
        raise SandboxError(f"{data!r} has {total} segmentations, more than the limit {limit}: use a shorter text")
    ends = lattice(data, table)
    out: list[list[int]] = []

    def extend(j: int, suffix: list[int]) -> None:
        if j == 0:
            out.append(suffix[::-1])
        for i, token in ends[j]:
            extend(i, suffix + [token])

    extend(len(data), [])
    return sorted(out, key=lambda ids: (len(ids), ids))


def word_counts(tokenizer, text: str, max_words: int = 5000) -> dict[str, int]:
    """Segmentation count of each distinct word (piece of the BPE tokenizer's split pattern) of
    `text`, the first max_words."""
    from sandbox.text.pretokenize import split

    table = token_table(tokenizer)
    words = list(dict.fromkeys(split(text, tokenizer.pattern)))[:max_words]
    return {w: count_segmentations(w.encode("utf-8"), table) for w in words}


def figure_word_counts(counts: dict[str, int]):
    """Histogram of log10(number of segmentations) over the words, against their byte length."""
    from sandbox.plotting import figure

    lengths = np.array([len(w.encode("utf-8")) for w in counts])
    logs = np.array([math.log10(c) if c else 0.0 for c in counts.values()])
    fig, (ax_hist, ax_len) = figure(10, 3.5, ncols=2)
    ax_hist.hist(logs, bins=40, color="C0")
    ax_hist.set(xlabel="log10(number of segmentations)", ylabel="words", title=f"{len(counts)} distinct words")
    ax_len.scatter(lengths, logs, s=4, alpha=0.5, label="word")
    ax_len.plot(np.arange(1, lengths.max() + 1), np.arange(1, lengths.max() + 1) * math.log10(2) - math.log10(2),
                "k--", lw=1, label="2^(n-1): every cut allowed")
    ax_len.set(xlabel="word length (bytes)", ylabel="log10(segmentations)", title="segmentations vs length")
    ax_len.legend(fontsize=7)
    return fig
