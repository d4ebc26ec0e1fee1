"""Split patterns against Hugging Face's pre-tokenizers, and GPT-2's byte-level alphabet."""

import random

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import SandboxError
from sandbox.text.bpe_hf import hf_pre_tokenizer
from sandbox.text.corpus import load_text
from sandbox.text.pretokenize import (
    _ASTRAL,
    BYTE_ORDER,
    BYTE_TO_CHAR,
    _stand_in,
    bytes_to_chars,
    chars_to_bytes,
    compile_pattern,
    split,
)

PARTS = [*"ab1 \t\r\n'sSdD.,!-", "\u00a0", "\u3000", "\u0301", "日本", "😀", "ſ", "٣", "\x1c", "\x85", "\r\n"]
TRICKY = st.lists(st.sampled_from(PARTS), max_size=30).map("".join)
# Code points assigned in Python's Unicode database (14.0). Later ones (e.g. U+3D000) are letters
# to `regex`, which follows newer Unicode, but not to HF's Oniguruma or tiktoken's regex crate.
ASSIGNED = st.text(st.characters(exclude_categories=("Cn", "Cs")))


def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's encoder.py, verbatim in spirit: the independent reference for the alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def hf_split(text: str, pattern: str) -> list[str]:
    return [p for p, _ in hf_pre_tokenizer(pattern).pre_tokenize_str(text)]


def test_byte_alphabet_is_gpt2s_and_hfs():
    from tokenizers.pre_tokenizers import ByteLevel

    assert BYTE_TO_CHAR == gpt2_bytes_to_unicode()
    assert sorted(BYTE_TO_CHAR.values()) == sorted(ByteLevel.alphabet())
    # ids follow the characters' code points, which is how HF's trainer orders its alphabet
    assert [BYTE_TO_CHAR[b] for b in BYTE_ORDER] == sorted(BYTE_TO_CHAR.values())
    data = bytes(range(256))
    assert chars_to_bytes(bytes_to_chars(data)) == data


def test_chars_outside_alphabet_are_refused():
    with pytest.raises(SandboxError, match="byte-level alphabet"):
        chars_to_bytes("a b")  # a plain space is spelled Ġ


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", "smollm"])
def test_split_matches_hf_on_corpus(pattern):
    text = load_text("pydoc")
    pieces = split(text, pattern)
    assert "".join(pieces) == text
    assert [bytes_to_chars(p.encode()) for p in pieces] == hf_split(text, pattern)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", "smollm"])
@settings(max_examples=150, deadline=None)
@given(text=st.one_of(ASSIGNED, TRICKY))
def test_split_matches_hf_on_fuzzed_text(pattern, text):
    pieces = split(text, pattern)
    assert "".join(pieces) == text
    assert [bytes_to_chars(p.encode()) for p in pieces] == hf_split(text, pattern)


def test_patterns_differ_where_documented():
    assert split("12345", "gpt4") == ["123", "45"]  # digit runs capped at 3
    assert split("12345", "gpt2") == ["12345"]
    assert split("x\n\ny", "gpt4") == ["x", "\n\n", "y"]
    assert split(" (hello", "gpt4") == [" (", "hello"]
    assert split("(hello", "gpt4") == ["(hello"]  # one non-letter may lead a word
    assert split("x 12345", "smollm") == ["x", " ", "1", "2", "3", "4", "5"]  # every digit alone
    assert split("a  1", "smollm") == ["a", "  ", "1"]  # a number ends the whitespace run
    assert split("a  1", "gpt2") == ["a", " ", " 1"]


def test_unknown_pattern_is_refused():
    with pytest.raises(SandboxError, match="gpt2, gpt4"):
        split("x", "gpt5")


def _shuffled_with_parts(code_points, seed: int) -> str:
    """Every code point once, in a seeded random order, half of them followed by a tricky part."""
    rng = random.Random(seed)
    cps = list(code_points)
    rng.shuffle(cps)
    parts = [*PARTS, "'", "'", " ", " "]
    return "".join(chr(c) + (rng.choice(parts) if rng.random() < 0.5 else "") for c in cps)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", "smollm"])
def test_fast_split_is_regex_on_every_bmp_character(pattern):
    # `split` runs `re` with classes spelled as ranges: the same pieces as the `regex` reference
    for seed in range(3):
        text = _shuffled_with_parts(range(0x10000), seed)
        assert split(text, pattern) == compile_pattern(pattern).findall(text)


def test_stand_ins_share_every_class_of_the_characters_above_the_bmp():
    astral = "".join(map(chr, range(0x10000, 0x110000)))
    stand_ins = _ASTRAL.sub(_stand_in, astral)
    # letters (Han, Tangut, ...) stand as "a", numbers (Brahmi, math, ...) as "0"; the rest (emoji,
    # unassigned, ...) stay, in no class, as "!" would be
    for kind in "a0!":
        chars = "".join(c for c, s in zip(astral, stand_ins) if s == (kind if kind != "!" else c))
        assert len(chars) > 1000
        for atom in [r"\p{L}", r"\p{N}", r"\s", r"['\r\n ]", r"(?i:[strevmld])"]:  # every atom of both patterns
            if regex.match(atom, kind):
                assert regex.fullmatch(f"(?:{atom})+", chars), (kind, atom)
            else:
                assert not regex.search(atom, chars), (kind, atom)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", "smollm"])
def test_fast_split_is_regex_above_the_bmp(pattern):
    text = _shuffled_with_parts(random.Random(0).sample(range(0x10000, 0x110000), 50_000), 0)
    pieces = split(text, pattern)
    assert pieces == compile_pattern(pattern).findall(text)
    assert sum(len(p) > 1 and not _ASTRAL.fullmatch(p[0]) and bool(_ASTRAL.search(p)) for p in pieces) > 1000
