"""The trainer's merge list is exactly Hugging Face `tokenizers`' BpeTrainer's."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import SandboxError
from sandbox.text import bpe
from sandbox.text.bpe_hf import hf_pre_tokenizer
from sandbox.text.bpe_train import count_pieces, train_merges
from sandbox.text.corpus import load_text
from sandbox.text.pretokenize import bytes_to_chars


def hf_merges(text: str, vocab_size: int, pattern: str) -> list[tuple[str, str]]:
    """HF's merges, with the configuration that makes its vocabulary ours: all 256 bytes."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = hf_pre_tokenizer(pattern)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([text], trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def our_merges(text: str, vocab_size: int, pattern: str) -> list[tuple[str, str]]:
    merges, vocab = train_merges(count_pieces(text, pattern), vocab_size)
    return [(bytes_to_chars(vocab[a]), bytes_to_chars(vocab[b])) for a, b in merges]


@pytest.fixture(scope="module")
def pydoc():
    return load_text("pydoc")


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_merges_match_hf_at_1024(pydoc, pattern):
    ours = our_merges(pydoc, 1024, pattern)
    assert len(ours) == 1024 - 256
    assert ours == hf_merges(pydoc, 1024, pattern)


def test_merges_match_hf_at_4096(pydoc):
    ours = our_merges(pydoc, 4096, "gpt4")
    assert len(ours) == 4096 - 256
    assert ours == hf_merges(pydoc, 4096, "gpt4")


@settings(max_examples=40, deadline=None)
@given(
    words=st.lists(st.text("abc", min_size=1, max_size=16), min_size=1, max_size=30),
    extra=st.integers(1, 80),
)
def test_merges_match_hf_on_small_corpora(words, extra):
    """Tiny alphabets force many ties and overlapping pairs (aaa, abab)."""
    text = " ".join(words)
    assert our_merges(text, 256 + extra, "gpt2") == hf_merges(text, 256 + extra, "gpt2")


def test_ties_go_to_the_smallest_pair_in_byte_level_order():
    # pieces "ab" and " ba": pairs (a,b), (b,a), (space,b) all occur once. Ids follow GPT-2's
    # alphabet: printable bytes first (a=64, b=65), space after them (220).
    merges, vocab = train_merges(count_pieces("ab ba", "gpt2"), 259)
    assert [(vocab[a], vocab[b]) for a, b in merges] == [(b"a", b"b"), (b"b", b"a"), (b" ", b"ba")]


def test_counts_weight_the_pieces():
    # "xy" occurs 3 times as a piece, "zw" twice, each within one piece, so xy wins.
    merges, vocab = train_merges({"zw": 2, "xy": 3}, 258)
    assert [vocab[256], vocab[257]] == [b"xy", b"zw"]


def test_vocab_size_errors():
    with pytest.raises(SandboxError, match=">= 257"):
        bpe.train("some text", 256)
    with pytest.raises(SandboxError, match="empty"):
        bpe.train("", 300)
    # "abab" is one piece: merges a+b, then ab+ab, then nothing is left: 258 ranks + 1 special
    with pytest.raises(SandboxError, match="ran out of pairs to merge at 259 tokens") as e:
        bpe.train("abab", 400, special_tokens=("<|endoftext|>",))
    assert "<= 259" in str(e.value)
