"""Regex -> byte DFA -> token index, checked against the `regex` module's partial matching."""

import random

import numpy as np
import pytest
import regex

from sandbox.errors import SandboxError
from sandbox.text import bpe
from sandbox.text.constrained import regex_index
from sandbox.text.corpus import load_text
from sandbox.text.regex_dfa import compile_regex
from sandbox.text.tokenizer import SymbolTokenizer

PATTERNS = [
    r"(25[0-5]|2[0-4]\d|[01]?\d\d?)(\.(25[0-5]|2[0-4]\d|[01]?\d\d?)){3}",
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
    r'\{"name": "[^"]{1,8}", "age": \d{1,3}\}',
    r"(?i)the (quick|lazy) [a-z]+ (is|are)?",
    r"[^a-c\n]{0,5}x+",
    r"(ab|a)*(c|é)",
]


@pytest.fixture(scope="module")
def tok():
    return bpe.train(load_text("pydoc")[:60_000], 400, pattern="gpt4")


def _oracle_allows(compiled, text: bytes) -> bool:
    """text is a prefix of a string in the language: decode, and for a cut final character try
    every character whose UTF-8 starts with the cut bytes (the test patterns treat all non-ASCII
    characters but é alike, so the first, the last and é stand for the rest)."""
    for cut in range(4):
        head, tail = text[: len(text) - cut], text[len(text) - cut :]
        try:
            s = head.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not tail:
            return compiled.fullmatch(s, partial=True) is not None
        candidates = [c for c in ("é", *_extremes(tail)) if c.encode("utf-8").startswith(tail)]
        return any(compiled.fullmatch(s + c, partial=True) is not None for c in candidates)
    return False


def _extremes(tail: bytes) -> list[str]:
    """The smallest and largest valid characters whose UTF-8 encoding starts with `tail`."""
    out = []
    for fill in (0x80, 0xBF):
        for n in (2, 3, 4):
            try:
                out.append((tail + bytes([fill] * (n - len(tail)))).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                pass
    lead = tail[0]
    if lead in (0xE0, 0xED, 0xF0, 0xF4):  # leads whose second byte is range-limited
        for second in range(0x80, 0xC0):
            for n in (3, 4):
                cand = tail[:1] + bytes([second]) + bytes([0x80] * (n - 2))
                try:
                    if cand.startswith(tail):
                        out.append(cand.decode("utf-8"))
                except UnicodeDecodeError:
                    pass
    return out


@pytest.mark.parametrize("pattern", PATTERNS)
def test_allowed_equals_partial_match_oracle_along_random_walks(tok, pattern):
    # (?a): the oracle tries only a few non-ASCII characters, so \d \w \s are kept ASCII here (their Unicode
    # meaning is checked against `re` in test_regex_python.py)
    index = regex_index("(?a)" + pattern, tok)
    compiled = regex.compile(pattern, regex.ASCII)
    eot = tok.special_tokens[bpe.ENDOFTEXT]
    rng = random.Random(0)
    checked = 0
    for _ in range(6):
        state, text = index.initial, b""
        for _ in range(12):
            mask_V = index.allowed(state)
            oracle_V = np.array([_oracle_allows(compiled, text + t) for t in tok.vocab])
            np.testing.assert_array_equal(mask_V[: len(tok.vocab)], oracle_V, err_msg=f"{pattern!r} after {text!r}")
            assert mask_V[eot] == (compiled.fullmatch(text.decode("utf-8", "replace")) is not None)
            assert index.is_final(state) == mask_V[eot]
            checked += 1
            choices = np.flatnonzero(mask_V[: len(tok.vocab)])
            if not len(choices):
                break
            t = int(rng.choice(list(choices)))
            state, text = index.advance(state, t), text + tok.vocab[t]
    assert checked >= 6


def test_dfa_is_minimal_and_agrees_with_regex_on_random_strings():
    pattern = r"(ab|a)*(c|é)"
    dfa = compile_regex(pattern)
    # states: start/after-a... the Myhill-Nerode classes of (ab|a)*(c|é) over bytes are
    # {e, after b}, {after a}, {after 0xC3}, {accept}: four, whatever the NFA looked like
    assert dfa.num_states == 4
    rng = random.Random(1)
    compiled = regex.compile(pattern)
    for _ in range(2000):
        s = "".join(rng.choice("abcé") for _ in range(rng.randint(0, 7)))
        assert dfa.fullmatch(s.encode()) == (compiled.fullmatch(s) is not None), s


@pytest.mark.parametrize(("pattern", "words"), [
    (r"(a)\1", "backreferences"), (r"a(?=b)", "lookaround"), (r"a(?<!b)", "lookaround"), (r"^a$", "anchors"),
    (r"(", "not valid syntax"), (r"a{3,1}", "min repeat greater than max repeat"), (r"a**", "multiple repeat"),
    (r"[^]", "unterminated character set"), (r"a*+a", "possessive quantifiers"), (r"(?>a)b", "atomic groups"),
])
def test_bad_patterns_raise_one_clear_error(tok, pattern, words):
    with pytest.raises(SandboxError) as err:
        regex_index(pattern, tok)
    assert words in str(err.value) and repr(pattern) in str(err.value)


def test_empty_language_and_uncompletable_pattern_are_refused(tok):
    with pytest.raises(SandboxError, match="language is empty"):
        regex_index(r"a[^\s\S]b", tok)
    with pytest.raises(SandboxError, match="cannot complete"):
        regex_index(r"ab\d", SymbolTokenizer(3))  # symbols a, b, c: no digit token


@pytest.mark.parametrize(("lo", "hi"), [(0, 0x7FF), (0x41, 0x1000), (0xD000, 0xE100), (0xFF00, 0x10100),
                                        (0x10FF00, 0x10FFFF)])
def test_utf8_byte_sequences_are_exactly_the_encodings(lo, hi):
    import itertools

    from sandbox.text.utf8_ranges import byte_sequences

    got = []
    for seq in byte_sequences(lo, hi):
        got += [bytes(b) for b in itertools.product(*(range(a, z + 1) for a, z in seq))]
    expected = [chr(c).encode("utf-8") for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF]
    assert sorted(got) == sorted(expected)  # each encoding once, nothing else (no surrogates, no overlongs)


def test_negated_classes_over_unicode_agree_with_regex():
    pattern = "[^aé\u4e00-\u4e0f]+[\u0400-\u04ff]?"  # the characters themselves: no \\u escapes
    dfa = compile_regex(pattern)
    compiled = regex.compile(pattern)
    rng = random.Random(2)
    pool = "aébç\u4e00\u4e05\u4e10\u0416\U0001f600x"
    for _ in range(3000):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(0, 5)))
        assert dfa.fullmatch(s.encode()) == (compiled.fullmatch(s) is not None), s
        assert (dfa.walk(s.encode()) >= 0) == (compiled.fullmatch(s, partial=True) is not None), s
