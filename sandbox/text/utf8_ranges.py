"""Sets of characters as byte automata: a code-point range becomes a few sequences of byte ranges.

UTF-8 writes a code point in 1-4 bytes: 0xxxxxxx, 110xxxxx 10xxxxxx, 1110xxxx 10xxxxxx 10xxxxxx,
11110xxx 10xxxxxx 10xxxxxx 10xxxxxx. A range [lo, hi] of code points that all have the same length
and differ only in their last k continuation bytes (lo's last k bytes all 0x80, hi's all 0xBF) is
exactly the set of byte strings b_1..b_n with b_i in [enc(lo)_i, enc(hi)_i]: a product of byte
ranges. Any range splits into O(length) such pieces by cutting at the length boundaries
(0x7F, 0x7FF, 0xFFFF), around the surrogates D800-DFFF (not encodable) and at multiples of 64^k,
as in Russ Cox's RE2 and the Rust `regex-syntax` crate.
"""

MAX_CODE_POINT = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
_LENGTH_ENDS = (0x7F, 0x7FF, 0xFFFF)


def byte_sequences(lo: int, hi: int) -> list[tuple[tuple[int, int], ...]]:
    """The UTF-8 encodings of code points lo..hi as a list of byte-range products
    ((lo_1, hi_1), ..., (lo_n, hi_n)); their union is exactly those encodings, each once."""
    out, stack = [], [(lo, hi)]
    while stack:
        lo, hi = stack.pop()
        if lo > hi:
            continue
        if lo <= _SURROGATES[1] and hi >= _SURROGATES[0]:
            stack += [(lo, _SURROGATES[0] - 1), (_SURROGATES[1] + 1, hi)]
            continue
        cut = next((e for e in _LENGTH_ENDS if lo <= e < hi), None)
        if cut is not None:
            stack += [(lo, cut), (cut + 1, hi)]
            continue
        if hi <= 0x7F:
            out.append(((lo, hi),))
            continue
        for k in (1, 2, 3):  # align to blocks sharing all but the last k continuation bytes
            mask = (1 << (6 * k)) - 1
            if lo & ~mask != hi & ~mask:
                if lo & mask:
                    stack += [(lo, lo | mask), ((lo | mask) + 1, hi)]
                    break
                if hi & mask != mask:
                    stack += [(lo, (hi & ~mask) - 1), (hi & ~mask, hi)]
                    break
        else:
            a, b = chr(lo).encode("utf-8"), chr(hi).encode("utf-8")
            out.append(tuple(zip(a, b)))
    return sorted(out)
