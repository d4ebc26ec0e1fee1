"""Token statistics against hand-computed values, and explanations against the encoder."""

import math

import pytest

from sandbox.errors import SandboxError
from sandbox.text import bpe
from sandbox.text.bpe_inspect import explain, stats
from sandbox.text.corpus import load_text


@pytest.fixture(scope="module")
def tok():
    return bpe.train(load_text("pydoc"), 700, pattern="gpt4")


def test_stats_by_hand():
    bytes_only = bpe.train("aab", 257)  # no merges: one token per byte
    st = stats(bytes_only, "aab")
    assert st["n_tokens"] == 3 and st["bytes_per_token"] == 1.0
    assert st["unigram_entropy_bits"] == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    # counts 2, 1 at ranks 1, 2: log f drops by log 2 as log r grows by log 2
    assert st["zipf_slope"] == pytest.approx(-1.0)
    with pytest.raises(SandboxError, match="empty"):
        stats(bytes_only, "")


def test_stats_on_corpus_are_plausible(tok):
    st = stats(tok, load_text("pydoc"))
    assert 2.5 < st["bytes_per_token"] < 5
    assert st["unigram_entropy_bits"] <= math.log2(st["distinct_tokens"])
    assert -1.6 < st["zipf_slope"] < -0.6


@pytest.mark.parametrize("word", [" tokenization", "Unbelievably, 12345 apples!", "日本語", " the"])
def test_explain_replays_the_encoding(tok, word):
    pieces = explain(tok, word)
    assert "".join(p["piece"] for p in pieces) == word
    assert [i for p in pieces for i in p["ids"]] == tok.encode(word)
    for p in pieces:
        data = p["piece"].encode()
        ranks = [s["token"] for s in p["steps"]]
        assert ranks == sorted(ranks)  # a token is only ever merged after its parts exist
        for s in p["steps"]:
            assert tok.ranks[s["left"] + s["right"]] == s["token"]
            assert b"".join(s["parts"]) == data
        if not p["whole_piece"]:
            final = p["steps"][-1]["parts"] if p["steps"] else [bytes([b]) for b in data]
            assert [tok.ranks[t] for t in final] == p["ids"]


def test_explain_of_a_whole_token(tok):
    (piece,) = explain(tok, " the")
    assert piece["whole_piece"] and piece["ids"] == [tok.ranks[b" the"]]
