"""Argument types for the sub-commands' parsers: each refuses a bad value in argparse's one line.

    p.add_argument("--seed", type=argtypes.SEED, default=0)
    p.add_argument("--num-steps", type=argtypes.count(1, 10_000), default=80)
"""

import argparse
import os
import stat
import sys

from sandbox.validate import SEED_MAX


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text[:40]!r}") from None


def count(low: int, high: int):
    """An integer in [low, high] (both shown in the refusal)."""
    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low:,}, {high:,}], got {text[:40]}")
        return value
    parse.__name__ = "integer"
    return parse


SIZE = count(1, 2**31 - 1)  # a size whose real limit the command checks itself, with its estimate
SEED = count(0, SEED_MAX)
PORT = count(1, 65535)
STEP = count(0, SEED_MAX)


def regular_file(path: str) -> str:
    """`path` unless it names a device, a pipe or a socket (reading one may never end, or never stop)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return path  # missing, or unreadable: the command says so in its own words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise argparse.ArgumentTypeError(f"{path[:80]} is a device, pipe or socket, not a file")
    return path


def utf8_text(text: str) -> str:
    """`text` unless it holds a surrogate: the shell passed bytes that are not UTF-8 (Python keeps them as
    lone surrogates), which no tokenizer, regex or file of the sandbox could write back."""
    bad = next((i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        raise argparse.ArgumentTypeError(f"is not valid UTF-8 text (a byte or surrogate that UTF-8 cannot hold "
                                         f"at character {bad}); give UTF-8 text")
    return text


def exact(n: int) -> str:
    """An integer written out in full, with its digit count when long (beyond Python's default int-to-str limit)."""
    with_limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        digits = str(n)
    finally:
        sys.set_int_max_str_digits(with_limit)
    return digits if len(digits) <= 30 else f"{digits} ({len(digits):,} digits)"
