"""Training byte-level BPE: the greedy merge sequence, with incremental pair counts.

Start from 256 byte tokens. Count every adjacent pair of tokens over the unique pieces of the
corpus, each weighted by how often the piece occurs. Repeatedly take the most frequent pair
(a, b), make the new token ab, and rewrite every piece that holds it. A merge only changes the
counts of pairs next to the merged spot: for an occurrence x a b y it removes (x, a) and (b, y)
and adds (x, ab) and (ab, y). So we update those counts in place and keep the pairs in a
max-heap with lazy invalidation: a popped entry whose count is stale is pushed back with its
current count, and only a fresh entry is merged. Cost per merge ~ number of occurrences.

The order is exactly Hugging Face `tokenizers`' `BpeTrainer`: highest count first, ties to
the smallest pair of ids (a, b), where the byte tokens have ids in GPT-2's byte-to-unicode order
(`pretokenize.BYTE_ORDER`) and merge i makes id 256 + i. Also like HF, a merge whose result is
already a token (e.g. ab+c after a+bc) reuses that token's id and adds no vocabulary, and a
heap entry rewrites only the pieces recorded with it.

Each piece is held as a Python str whose characters are token ids (chr(id)), so finding and
rewriting a pair are C-speed `str.find` / `str.replace` (both leftmost, non-overlapping, as HF).
"""

import heapq
from collections import Counter

from sandbox.errors import SandboxError
from sandbox.text.pretokenize import BYTE_ORDER, split

BYTE_ID = {b: i for i, b in enumerate(BYTE_ORDER)}
_BYTE_CHAR = [chr(BYTE_ID[b]) for b in range(256)]


def count_pieces(text: str, pattern: str) -> Counter:
    """How often each piece of the split pattern occurs in `text`."""
    return Counter(split(text, pattern))


def train_merges(piece_counts: dict[str, int], n_tokens: int) -> tuple[list[tuple[int, int]], list[bytes]]:
    """Learn merges until there are `n_tokens` tokens (256 bytes + new ones) or no pair is left.

    Returns (merges, vocab): merges[i] = (a, b), the pair of ids merged at step i; vocab[id] the
    bytes of each token (fewer than n_tokens if the corpus ran out of pairs).
    """
    vocab = [bytes([b]) for b in BYTE_ORDER]
    if n_tokens < len(vocab):
        raise SandboxError(f"vocab size {n_tokens} is below the 256 byte tokens: give at least 256")
    words = ["".join(_BYTE_CHAR[b] for b in piece.encode("utf-8")) for piece in piece_counts]
    counts = list(piece_counts.values())
    pair_counts, where = Counter(), {}
    for i, (w, c) in enumerate(zip(words, counts)):
        for j in range(len(w) - 1):
            p = w[j : j + 2]
            pair_counts[p] += c
            where.setdefault(p, set()).add(i)
    heap = [(-pair_counts[p], p, k, pos) for k, (p, pos) in enumerate(where.items())]
    heapq.heapify(heap)
    seq = len(heap)  # tie-breaker so the heap never compares the sets
    id_of = {t: i for i, t in enumerate(vocab)}
    merges = []
    while len(vocab) < n_tokens and heap:
        neg, p, _, pos = heapq.heappop(heap)
        count = pair_counts[p]
        if -neg != count:  # stale entry: push back with its current count
            heapq.heappush(heap, (-count, p, seq, pos))
            seq += 1
            continue
        if count < 1:
            break
        a, b = ord(p[0]), ord(p[1])
        token = vocab[a] + vocab[b]
        new = id_of.get(token)
        if new is None:
            new = id_of[token] = len(vocab)
            vocab.append(token)
        merges.append((a, b))
        grown = _merge_everywhere(words, counts, pos, p, chr(new), pair_counts)
        for q, q_pos in grown.items():
            if pair_counts[q] > 0:
                heapq.heappush(heap, (-pair_counts[q], q, seq, q_pos))
                seq += 1
    return merges, vocab


def _merge_everywhere(words, counts, pos, p, new, pair_counts) -> dict[str, set]:
    """Rewrite pair `p` as `new` in the pieces `pos`, updating `pair_counts` in place.

    Returns the pairs whose count grew, each with the pieces where it grew.
    """
    first, second = p
    grown = {}
    for i in pos:
        w = words[i]
        j = w.find(p)
        if j < 0:
            continue
        c, last = counts[i], len(w) - 2
        end = -1
        while j >= 0:
            if j > 0:  # (x, a) -> (x, ab); x is the new token if the last match ended here
                x = new if j == end else w[j - 1]
                pair_counts[x + first] -= c
                q = x + new
                pair_counts[q] += c
                grown.setdefault(q, set()).add(i)
            if j < last:  # (b, y) -> (ab, y)
                y = w[j + 2]
                pair_counts[second + y] -= c
                q = new + y
                pair_counts[q] += c
                grown.setdefault(q, set()).add(i)
            end = j + 2
            j = w.find(p, end)
        words[i] = w.replace(p, new)
    return grown
