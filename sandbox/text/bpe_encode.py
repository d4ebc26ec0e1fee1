"""Encoding one piece with tiktoken's byte-pair semantics, in O(n log n).

A piece (one match of the split pattern) that is itself a token becomes that token. Otherwise
start from its bytes and repeatedly merge the adjacent pair whose concatenation has the lowest
rank (token id), the leftmost one on ties, until no adjacent pair is a token.

tiktoken rescans all pairs after each merge, which is quadratic on a long piece. Here the
parts form a linked list (`end[i]` = end of the part starting at byte i, -1 once absorbed;
`start_before[i]` = start of the part before it) and candidate merges sit in a min-heap keyed by
(rank, start, end), packed in one int: popping gives the lowest rank, leftmost on ties. A merge
creates at most two new candidates (with its left and right neighbours); an entry whose span is
no longer two adjacent parts is skipped when popped (lazy invalidation).
"""

import heapq
from collections.abc import Callable


def merge_piece(
    piece: bytes, ranks: dict[bytes, int], on_merge: Callable[[int, int, int], None] | None = None
) -> list[int]:
    """Token ids of `piece` under the byte-pair ranks; `on_merge(start, mid, end)` sees each
    merge of piece[start:mid] + piece[mid:end], in order (for explanations)."""
    n = len(piece)
    s = n + 1  # a candidate merge of piece[i:e] with rank r is the int (r * s + i) * s + e
    end = [*range(1, n + 1), -1]  # end[n] = -1 is a sentinel: end[end[i]] fails for dead i
    start_before = list(range(-1, n))
    get = ranks.get
    heap = [(r * s + i) * s + i + 2 for i in range(n - 1) if (r := get(piece[i : i + 2])) is not None]
    heapq.heapify(heap)
    while heap:
        rest, e = divmod(heapq.heappop(heap), s)
        i = rest % s
        m = end[i]
        if end[m] != e:  # piece[i:e] is no longer two adjacent parts (same rank, same span is fine)
            continue
        if on_merge is not None:
            on_merge(i, m, e)
        end[i], end[m] = e, -1
        if e < n:
            start_before[e] = i
            f = end[e]
            if (r := get(piece[i:f])) is not None:
                heapq.heappush(heap, (r * s + i) * s + f)
        h = start_before[i]
        if h >= 0 and (r := get(piece[h:e])) is not None:
            heapq.heappush(heap, (r * s + h) * s + e)
    ids, i = [], 0
    while i < n:
        ids.append(ranks[piece[i : end[i]]])
        i = end[i]
    return ids
