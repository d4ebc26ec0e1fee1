r"""Pre-tokenization: the split pattern that cuts text into pieces before byte-level BPE.

BPE never merges across a piece boundary, so the pattern decides which byte strings can ever
become tokens (no token spans a letter and a digit, a word and the next word's leading space
is glued to it, ...). A regex alternation is a finite-state machine scanned left to right:
at each position the first alternative that matches wins and the scan resumes after it.

- "gpt2": GPT-2's pattern, exactly the one Hugging Face's `ByteLevel` pre-tokenizer uses.
- "gpt4": cl100k_base's pattern (GPT-4) in its original form, without possessive quantifiers,
  so that Python's `regex`, tiktoken's fancy-regex and HF's Oniguruma all read it the same way.
  It caps digit runs at 3, lets one non-letter lead a word, and keeps newlines apart.
- "smollm": SmolLM2's (HF: `Digits(individual_digits=True)` then GPT-2's `ByteLevel`; llama.cpp:
  the pre-tokenizer type `smollm`, "\p{N}" then GPT-2's regex). Every number character is a piece
  of its own, and GPT-2's regex runs on the text between them, where a number's place counts as
  the end of the text. As one regex: GPT-2's, with ` ?\p{N}+` become `\p{N}` and the lookahead
  of `\s+(?!\S)` also stopping before a number: "a  1" is "a", "  ", "1" (GPT-2: "a", " ", " 1").

Caveat: `regex` follows a newer Unicode version than tiktoken's and HF's regex engines, so a
code point assigned only recently (e.g. U+3D000, a letter to `regex`) may split differently;
on characters assigned in Unicode 14 all three agree (tested).

Speed: `split` runs the pattern on Python's built-in `re`, about twice as fast per piece as
`regex`, which stays the reference (`compile_pattern`). `re` has no letter or number classes
and its whitespace class differs, so each class is spelled out as the BMP code-point ranges where `regex` says yes. A
character above U+FFFF enters a match only through the classes it belongs to, so `split` puts a
BMP character of the same classes in its place ("a" a letter, "0" a number), splits, and puts
the original back into the pieces that hold it; the others (emoji, ...) need nothing, since `re`
already puts them in no class. Both are tested on every code point.

The byte-level alphabet (`BYTE_ORDER`, `byte_to_char`) is GPT-2's printable stand-in for each
byte, used by HF's `ByteLevel` and by the saved tokenizer file.
"""

import re
from functools import cache

import numpy as np
import regex

from sandbox.errors import SandboxError

PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "gpt4": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",  # noqa: E501
    "smollm": r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+""",
}


def pattern_string(name: str) -> str:
    """The regex source of the split pattern called `name` ("gpt2", "gpt4" or "smollm")."""
    if name not in PATTERNS:
        raise SandboxError(f"unknown split pattern {name!r}: choose one of {', '.join(PATTERNS)}")
    return PATTERNS[name]


@cache
def compile_pattern(name: str) -> regex.Pattern:
    """The compiled split pattern called `name`."""
    return regex.compile(pattern_string(name))


def split(text: str, pattern: str = "gpt4") -> list[str]:
    """Cut `text` into pieces with the split pattern; "".join(pieces) == text.
    Same pieces as compile_pattern(pattern).findall(text), found by `re` (see above)."""
    fast = _compile_re(pattern)
    astral = [m.start() for m in _ASTRAL.finditer(text) if _LETTER_OR_NUMBER.match(m[0])]
    if not astral:  # the others above the BMP (emoji, ...) are in no class, to `re` as to `regex`
        return fast.findall(text)
    pieces = fast.findall(_ASTRAL.sub(_stand_in, text))
    ends = np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)))
    for k in set(np.searchsorted(ends, astral, side="right").tolist()):
        end = int(ends[k])
        pieces[k] = text[end - len(pieces[k]) : end]
    return pieces


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_CLASSES = regex.compile(r"\[(?:\\.|[^\\\]])*\]|\\p\{[LN]\}|\\[sS]")  # [...], \p{L}, \p{N}, \s, \S
_IN_CLASS = regex.compile(r"\\p\{[LN]\}|\\s")


@cache
def _compile_re(name: str) -> re.Pattern:
    """The split pattern `name` for `re`, each class spelled as BMP ranges (same pieces as `regex`)."""

    def spell(m) -> str:
        if m[0].startswith("["):
            return _IN_CLASS.sub(lambda k: _bmp_ranges(k[0]), m[0])
        if m[0] == r"\S":
            return "[^" + _bmp_ranges(r"\s") + "]"
        return "[" + _bmp_ranges(m[0]) + "]"

    return re.compile(_CLASSES.sub(spell, pattern_string(name)))


@cache
def _bmp_ranges(cls: str) -> str:
    r"""The BMP characters in the `regex` class `cls` (e.g. \p{L}) as `re` class ranges \uXXXX-\uXXXX."""
    bmp = "".join(map(chr, range(0x10000)))
    return "".join(f"\\u{m.start():04x}-\\u{m.end() - 1:04x}" for m in regex.finditer(f"[{cls}]+", bmp))


def _stand_in(m: re.Match) -> str:
    """A BMP character in the same split-pattern classes as the letter or number above U+FFFF
    matched; any other character stays (`re` already puts it in no class)."""
    return "a" if _LETTER.match(m[0]) else "0" if _NUMBER.match(m[0]) else m[0]


_LETTER, _NUMBER, _LETTER_OR_NUMBER = regex.compile(r"\p{L}"), regex.compile(r"\p{N}"), regex.compile(r"[\p{L}\p{N}]")


def _byte_order() -> tuple[int, ...]:
    """Bytes sorted by their GPT-2 stand-in character: printable bytes keep their own code
    point, the other 68 (controls, space, NBSP, soft hyphen) map to 256, 257, ... in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    return (*printable, *(b for b in range(256) if b not in printable))


BYTE_ORDER = _byte_order()
BYTE_TO_CHAR = {b: chr(b if i < 188 else 256 + i - 188) for i, b in enumerate(BYTE_ORDER)}
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def bytes_to_chars(data: bytes) -> str:
    """Spell bytes in GPT-2's byte-level alphabet (one printable character per byte)."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def chars_to_bytes(chars: str) -> bytes:
    """Inverse of `bytes_to_chars`; SandboxError if a character is outside the alphabet."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in chars)
    except KeyError as e:
        raise SandboxError(f"character {e.args[0]!r} is not in the byte-level alphabet") from None
