"""Encoding pieces by byte-pair merges: one long piece in O(n log n), or many short pieces at
once in numpy.

Start from the piece's bytes and repeatedly merge the adjacent pair of lowest rank, the leftmost
one on ties, until no adjacent pair has a rank. Two rules give the ranks:
- tiktoken's: a pair has a rank iff its concatenation is a token, and the rank is that token's id
  (so ranks follow ids); a piece that is itself a token becomes that token before any merging
  (the caller looks it up).
- Hugging Face's and llama.cpp's (`merges` given): a pair has a rank iff it is listed, and the
  rank is its place in the list, whatever the id of the token it makes.

One piece, `merge_piece`: tiktoken rescans all pairs after each merge, which is quadratic on a
long piece. Here the parts form a linked list (`end[i]` = end of the part starting at byte i, -1
once absorbed; `start_before[i]` = start of the part before it) and candidate merges sit in a
min-heap keyed by (rank, start, end), packed in one int: popping gives the lowest rank, leftmost
on ties. A merge creates at most two new candidates (with its left and right neighbours); an
entry whose span is no longer two adjacent parts is skipped when popped (lazy invalidation).

Many pieces, `merge_pieces`: the pieces lie end to end in one array of token ids, beside the
array of the ranks of their adjacent pairs (`PairRanks`; "not a token" across two pieces). One
round is the same step for every piece: a segmented minimum picks its lowest-rank pair, leftmost
on ties; the pair's right part drops out, and only the two pairs next to it get new ranks. A
piece is done, and leaves the arrays, when its lowest rank is "not a token"; one of n bytes takes
at most n - 1 rounds.
"""

import heapq
from collections.abc import Callable

import numpy as np

NONE = np.iinfo(np.int32).max  # the rank of a pair that is not a token
_LONG = 64  # a longer piece goes through merge_piece: a round per merge would cost more than its heap
FEW = 64  # fewer short pieces go through merge_piece too: numpy's fixed cost per round outweighs them
_DEAD = np.iinfo(np.int64).max  # the key of a part merged away: above every live key


def merge_piece(
    piece: bytes,
    ranks: dict[bytes, int],
    on_merge: Callable[[int, int, int], None] | None = None,
    merge_ranks: dict[tuple[bytes, bytes], int] | None = None,
) -> list[int]:
    """Token ids of `piece` (`ranks`: bytes -> id) under tiktoken's rule, or under the listed
    merges' rule when `merge_ranks` ((left, right) -> place in the list) is given;
    `on_merge(start, mid, end)` sees each merge of piece[start:mid] + piece[mid:end], in order."""
    n = len(piece)
    s = n + 1  # a candidate merge of piece[i:e] with rank r is the int (r * s + i) * s + e
    end = [*range(1, n + 1), -1]  # end[n] = -1 is a sentinel: end[end[i]] fails for dead i
    start_before = list(range(-1, n))
    if merge_ranks is None:
        by_token = ranks.get

        def get(i, m, e):
            return by_token(piece[i:e])
    else:
        by_pair = merge_ranks.get

        def get(i, m, e):
            return by_pair((piece[i:m], piece[m:e]))

    heap = [(r * s + i) * s + i + 2 for i in range(n - 1) if (r := get(i, i + 1, i + 2)) is not None]
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
            if (r := get(i, e, f)) is not None:
                heapq.heappush(heap, (r * s + i) * s + f)
        h = start_before[i]
        if h >= 0 and (r := get(h, i, e)) is not None:
            heapq.heappush(heap, (r * s + h) * s + e)
    ids, i = [], 0
    while i < n:
        ids.append(ranks[piece[i : end[i]]])
        i = end[i]
    return ids


class PairRanks:
    """rank(a, b) for arrays of ids: the rank of merging tokens a and b, NONE if they do not
    merge; `result[rank]` is the id of the token the merge makes. Under tiktoken's rule
    (`merges` None) the rank is the id of vocab[a] + vocab[b] if that is a token; under the
    listed merges' rule it is the place of (vocab[a], vocab[b]) in `merges`. Every pair is
    listed once, sorted by a * (pad + 1) + b."""

    def __init__(self, ranks: dict[bytes, int], merges: list[tuple[bytes, bytes]] | None = None):
        self.ranks = ranks
        self.pad = max(ranks.values()) + 1  # an id past every token: no pair with it is a token
        self.byte_ids = np.array([ranks.get(bytes([b]), self.pad) for b in range(256)], np.int32)
        pairs = {}
        if merges is None:
            self.merge_ranks = None
            self.result = np.arange(self.pad, dtype=np.int64)
            for token, rank in ranks.items():
                for k in range(1, len(token)):
                    a, b = ranks.get(token[:k]), ranks.get(token[k:])
                    if a is not None and b is not None:
                        pairs[a * (self.pad + 1) + b] = rank
        else:
            self.merge_ranks = {pair: k for k, pair in enumerate(merges)}  # a pair listed twice: the last place, as HF
            self.result = np.array([ranks[a + b] for a, b in merges], np.int64)
            for (a, b), k in self.merge_ranks.items():
                pairs[ranks[a] * (self.pad + 1) + ranks[b]] = k
        keys = sorted(pairs)
        self.keys = np.array([*keys, np.iinfo(np.int64).max], np.int64)  # a sentinel past every key
        self.values = np.array([*map(pairs.get, keys), NONE], np.int32)
        self.byte_pair = self(self.byte_ids[:, None], self.byte_ids)  # [x, y]: rank of bytes x, y

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        key = np.asarray(a, np.int64) * (self.pad + 1) + b
        flat = key.ravel()
        order = np.argsort(flat)
        i = np.empty_like(order)
        i[order] = np.searchsorted(self.keys, flat[order])  # sorted queries: ~10x faster than unsorted
        return np.where(self.keys[i] == flat, self.values[i], NONE).reshape(key.shape)


def merge_pieces(pieces: list[bytes], pair_rank: PairRanks, few: int = FEW) -> list[bytes]:
    """merge_piece of every piece (under `pair_rank`'s rule), each piece's ids packed as native int32
    (`array("i", b)`): the short ones together, in vectorized rounds (module docstring), unless
    there are fewer than `few`. Bytes, not lists: the garbage collector does not track them, so
    thousands of results do not set off collections."""
    out = [b""] * len(pieces)
    short = [i for i, piece in enumerate(pieces) if 0 < len(piece) <= _LONG]
    one_by_one = [i for i, piece in enumerate(pieces) if len(piece) > _LONG] + (short if len(short) < few else [])
    for i in one_by_one:
        out[i] = _packed(merge_piece(pieces[i], pair_rank.ranks, merge_ranks=pair_rank.merge_ranks))
    if len(short) >= few:
        for i, ids in zip(short, _merge_rounds([pieces[i] for i in short], pair_rank)):
            out[i] = ids
    return out


def _packed(ids: list[int]) -> bytes:
    return np.array(ids, np.int32).tobytes()


def _merge_rounds(pieces: list[bytes], pair_rank: PairRanks) -> list[bytes]:
    """Token ids of the pieces, laid end to end in one array, one merge per piece per round.

    Part i (a token id) sits beside key[i] = (rank of the pair it starts) << 32 | i, so one
    segmented minimum per round finds every piece's lowest-rank, leftmost pair. A merged-away part
    stays in place, keyed _DEAD and skipped by next_ / before (the live parts around each part),
    and a finished piece stays too (its keys are all "not a token", above any key of the piece
    before it): the arrays are compacted only once the pieces still merging span under half of
    them, so most rounds touch every part once (the minimum) and the rest per piece."""
    out = [b""] * len(pieces)
    length = np.fromiter(map(len, pieces), np.int64, len(pieces))
    data = np.frombuffer(b"".join(pieces), np.uint8)
    ids = pair_rank.byte_ids[data].astype(np.int64)
    rank = np.append(pair_rank.byte_pair[data[:-1], data[1:]], NONE).astype(np.int64)
    end = np.cumsum(length)
    start = end - length
    rank[end - 1] = NONE  # no pair across two pieces
    piece = np.arange(len(pieces))  # the pieces still merging
    while len(piece):
        held, held_start = piece, start  # the pieces the arrays hold, end to end
        at = np.arange(len(ids))
        key, next_, before = rank << 32 | at, at + 1, at - 1
        while len(piece) and 2 * int((end - start).sum()) >= len(ids):
            best = np.minimum.reduceat(key, start)
            r, j = best >> 32, best & 0xFFFFFFFF
            if not (going := r != NONE).all():
                piece, start, end, r, j = piece[going], start[going], end[going], r[going], j[going]
            r = pair_rank.result[r]  # from here on the id of the merged token
            k = next_[j]  # part j takes in part k
            ids[j], key[k] = r, _DEAD
            m = next_[k]
            next_[j], h = m, before[j]
            left, right = h >= start, m < end
            hl, jr, mr = h[left], j[right], m[right]
            before[mr] = jr
            new = pair_rank(np.concatenate([ids[hl], r[right]]), np.concatenate([r[left], ids[mr]])).astype(np.int64)
            key[hl] = new[: len(hl)] << 32 | hl
            key[j] = NONE << 32 | j
            key[jr] = new[len(hl) :] << 32 | jr
        start, end, ids, rank = _compact(piece, held, held_start, key, ids, out)
    return out


def _compact(piece, held, held_start, key, ids, out):
    """Write out the finished pieces among `held` (end to end in the arrays from `held_start`) and
    keep the live parts of the pieces still merging (`piece`): their (start, end, ids, rank)."""
    alive = key != _DEAD
    count = np.add.reduceat(alive, held_start, dtype=np.int64)  # live parts per held piece
    still = np.zeros(len(held), bool)
    still[np.searchsorted(held, piece)] = True
    in_still = np.repeat(still, np.diff(held_start, append=len(key)))
    packed, at = ids[alive & ~in_still].astype(np.int32).tobytes(), 0
    for i, n in zip(held[~still].tolist(), (4 * count[~still]).tolist()):
        out[i], at = packed[at : at + n], at + n
    keep, count = alive & in_still, count[still]
    end = np.cumsum(count)
    return end - count, end, ids[keep], key[keep] >> 32
