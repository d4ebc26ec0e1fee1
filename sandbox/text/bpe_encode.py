"""Encoding one piece with tiktoken's byte-pair semantics, in O(n log n).

A piece (one match of the split pattern) that is itself a token becomes that token. Otherwise
start from its bytes and repeatedly merge the adjacent pair whose concatenation has the lowest
rank (token id), the leftmost one on ties, until no adjacent pair is a token.

tiktoken rescans all pairs after each merge, which is quadratic on a long piece. Here the
parts form a linked list (`end[i]` = end of the part starting at byte i, -1 once absorbed;
`start_before[i]` = start of the part before it) and candidate merges sit in a min-heap keyed by
(rank, start): popping gives the lowest rank, leftmost on ties. A merge creates at most two
new candidates (with its left and right neighbours); entries whose parts changed since they
were pushed are recognised by their recorded extents and skipped (lazy invalidation).
"""

import heapq
from collections.abc import Callable


def merge_piece(
    piece: bytes, ranks: dict[bytes, int], on_merge: Callable[[int, int, int], None] | None = None
) -> list[int]:
    """Token ids of `piece` under the byte-pair ranks; `on_merge(start, mid, end)` sees each
    merge of piece[start:mid] + piece[mid:end], in order (for explanations)."""
    n = len(piece)
    end = list(range(1, n + 1))
    start_before = list(range(-1, n - 1))
    heap = []
    for i in range(n - 1):
        r = ranks.get(piece[i : i + 2])
        if r is not None:
            heap.append((r, i, i + 1, i + 2))
    heapq.heapify(heap)
    while heap:
        _, i, m, e = heapq.heappop(heap)
        if end[i] != m or end[m] != e:  # a part changed since this entry was pushed
            continue
        if on_merge is not None:
            on_merge(i, m, e)
        end[i], end[m] = e, -1
        if e < n:
            start_before[e] = i
            r = ranks.get(piece[i : end[e]])
            if r is not None:
                heapq.heappush(heap, (r, i, e, end[e]))
        h = start_before[i]
        if h >= 0:
            r = ranks.get(piece[h:e])
            if r is not None:
                heapq.heappush(heap, (r, h, i, e))
    ids, i = [], 0
    while i < n:
        ids.append(ranks[piece[i : end[i]]])
        i = end[i]
    return ids
