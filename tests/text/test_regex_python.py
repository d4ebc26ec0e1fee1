"""The regex automaton means what Python's `re` means: walked byte by byte over UTF-8, it accepts a
string iff `re.fullmatch` does, on generated patterns and strings (non-ASCII included)."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import SandboxError
from sandbox.text.constrained import regex_index
from sandbox.text.regex_dfa import compile_regex
from sandbox.text.tokenizer import ByteTokenizer

# characters where ASCII-only classes, case folding or UTF-8 lengths would differ from Python
CHARS = ["a", "b", "k", "K", "s", "S", "_", "1", " ", "\n", "é", "É", "٣", "\xa0", "\u212a", "ſ", "ß", "中", "😀"]
ATOMS = [re.escape(c) for c in CHARS] + [r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", ".", "[ab]", r"[^a\d]", "[]a]",
                                          r"[a-é]", r"[^\s\S]", r"[\w\s]", "[k-s]", "[^K]"]
QUANTIFIERS = ["", "", "*", "+", "?", "{1,2}", "*?", "{2}"]


def _pattern(draw_atoms):
    return st.recursive(
        st.tuples(st.sampled_from(ATOMS), st.sampled_from(QUANTIFIERS)).map("".join),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map("".join),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
            st.tuples(inner, st.sampled_from(QUANTIFIERS)).map(lambda t: f"({t[0]}){t[1]}"),
            inner.map(lambda x: f"(?i:{x})"),
        ),
        max_leaves=5)


PATTERNS = st.tuples(st.sampled_from(["", "", "(?i)", "(?s)", "(?a)", "(?ia)"]), _pattern(ATOMS)).map("".join)


@settings(max_examples=80, deadline=None)
@given(PATTERNS, st.lists(st.text(alphabet=CHARS, max_size=4), min_size=1, max_size=8))
def test_automaton_accepts_exactly_what_re_fullmatch_accepts(pattern, texts):
    try:
        dfa = compile_regex(pattern)
    except SandboxError as e:  # refused only when no string matches: then re matches none of these either
        assert "language is empty" in str(e)
        assert not any(re.fullmatch(pattern, text) for text in texts), pattern
        return
    for text in texts:
        assert dfa.fullmatch(text.encode()) == (re.fullmatch(pattern, text) is not None), (pattern, text)


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    (r"\D", "٣", False), (r"\W", "é", False), (r"\S", "\xa0", False), (r"[^a\d]", "٣", False), (r"\d", "٣", True),
    (r"(?i)k", "\u212a", True), (r"(?i)s", "ſ", True), (r"(?i)[a-z]", "\u212a", True), (r"[]a]+", "]a]", True),
    (r"(?a)\w", "é", False),
])
def test_unicode_classes_and_case_folding_as_python(pattern, text, expected):
    assert (re.fullmatch(pattern, text) is not None) == expected
    assert compile_regex(pattern).fullmatch(text.encode()) == expected


@pytest.mark.parametrize(("pattern", "words"), [
    ("a**", "multiple repeat"), ("[^]", "unterminated character set"), ("a*+a", "possessive quantifiers"),
    ("(?>a)", "atomic groups"), (r"(a|b)*a(a|b){16}", "more than 10,000 states"),
])
def test_what_python_rejects_or_the_automaton_cannot_follow_is_refused_in_one_line(pattern, words):
    with pytest.raises(SandboxError) as err:
        regex_index(pattern, ByteTokenizer())
    assert words in str(err.value) and "\n" not in str(err.value)
