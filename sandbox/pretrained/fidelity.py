"""How much a compressed sentence encoder still agrees with the original, on real sentences.

Embedding fidelity is the mean cosine cos(e_i, e'_i) between each sentence's original and
compressed unit-norm embeddings. Retrieval agreement asks whether search still finds the same
thing: the fraction of sentences whose top-1 nearest neighbour among the others (by cosine) is
unchanged after compression.
"""

import re

import numpy as np

from sandbox.text.corpus import load_text

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def corpus_sentences(n: int, corpus: str = "pydoc", min_words: int = 6, max_words: int = 40) -> list[str]:
    """`n` distinct prose sentences spread evenly through the corpus (deterministic).

    Paragraphs are split at sentence ends; lines that look like code or tables, and sentences
    outside min_words..max_words words, are skipped.
    """
    seen, found = set(), []
    for para in load_text(corpus).split("\n\n"):
        if para.startswith((" ", "\t", ">>>", "*", "+", "=", "|")):
            continue
        for s in _SPLIT.split(" ".join(para.split())):
            words = s.split()
            letters = sum(c.isalpha() or c == " " for c in s) / max(len(s), 1)
            if min_words <= len(words) <= max_words and letters > 0.85 and s[-1] in ".!?" and s not in seen:
                seen.add(s)
                found.append(s)
    if n > len(found):
        n = len(found)
    pick = np.linspace(0, len(found) - 1, n).round().astype(int)
    return [found[i] for i in pick]


def nearest_neighbours(emb_NxD) -> np.ndarray:
    """Index of each row's most similar other row by cosine (rows are unit-norm)."""
    sim_NxN = emb_NxD @ emb_NxD.T
    np.fill_diagonal(sim_NxN, -np.inf)
    return np.argmax(sim_NxN, axis=1)


def fidelity(ref_NxD, emb_NxD, ref_neighbours=None) -> dict:
    """{"mean_cosine", "min_cosine", "top1_agreement"} of compressed embeddings against the original."""
    ref, emb = np.asarray(ref_NxD, np.float64), np.asarray(emb_NxD, np.float64)
    cos = np.sum(ref * emb, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(emb, axis=1))
    ref_nn = nearest_neighbours(ref) if ref_neighbours is None else ref_neighbours
    return {
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "top1_agreement": float(np.mean(nearest_neighbours(emb) == ref_nn)),
    }
