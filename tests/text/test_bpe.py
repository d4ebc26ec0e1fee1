"""Encoding identical to tiktoken, round trips, special tokens, long pieces, save/load, export."""

import json
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sandbox.errors import SandboxError
from sandbox.text import bpe
from sandbox.text.bpe_encode import NONE, PairRanks, merge_piece, merge_pieces
from sandbox.text.corpus import load_text
from sandbox.text.pretokenize import split

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def pydoc():
    return load_text("pydoc")


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def tok(request, pydoc):
    return bpe.train(pydoc, 1024, pattern=request.param)


@pytest.fixture(scope="module")
def gpt4(pydoc):
    return bpe.train(pydoc, 1024, pattern="gpt4")


def test_corpus_encodes_like_tiktoken(tok, pydoc):
    ids = tok.encode(pydoc)
    assert ids == tok.to_tiktoken().encode_ordinary(pydoc)
    assert tok.decode(ids) == pydoc
    assert len(pydoc.encode()) / len(ids) > 2.5  # 768 merges compress English well beyond bytes


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cn", "Cs"))))  # see test_pretokenize
@example("")
@example(EOT)
@example("naïve café 日本語 😀👍🏽 e\u0301 a\r\nb\u00a0c\u3000d 1234567 don'T DON'T \t\n\n  x")
def test_fuzzed_text_encodes_like_tiktoken_and_round_trips(tok, text):
    ids = tok.encode(text, disallowed_special=())  # hypothesis does try "<|endoftext|>"
    assert ids == tok.to_tiktoken().encode(text, disallowed_special=())
    assert ids == tok.encode_ordinary(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size - 1 for i in ids)  # never the special token


def test_lone_surrogates_become_replacement_characters_as_in_tiktoken(gpt4):
    text = "a\ud800b"
    assert gpt4.encode(text) == gpt4.to_tiktoken().encode(text)
    assert gpt4.decode(gpt4.encode(text)) == "a\ufffdb"


def test_special_tokens_follow_tiktoken(gpt4):
    enc = gpt4.to_tiktoken()
    text = f"one{EOT}two"
    assert gpt4.vocab_size == enc.n_vocab == 1024
    with pytest.raises(SandboxError, match="special token '<\\|endoftext\\|>' at character 3"):
        gpt4.encode(text)
    with pytest.raises(ValueError):
        enc.encode(text)
    allowed = gpt4.encode(text, allowed_special="all")
    assert allowed == enc.encode(text, allowed_special="all")
    assert allowed.count(1023) == 1 and gpt4.decode(allowed) == text
    plain = gpt4.encode(text, disallowed_special=())
    assert plain == enc.encode(text, disallowed_special=()) and 1023 not in plain
    with pytest.raises(SandboxError, match="unknown special tokens"):
        gpt4.encode("x", allowed_special={"<|fim|>"})


def test_decode_strict_and_replace(gpt4):
    ids = gpt4.encode("é")  # two bytes, c3 a9
    cut = [i for i in range(256) if gpt4.decode_bytes([i]) == b"\xc3"]
    assert gpt4.decode_bytes(ids) == "é".encode()
    assert gpt4.decode(cut) == "\ufffd"
    with pytest.raises(SandboxError, match="invalid UTF-8"):
        gpt4.decode(cut, errors="strict")
    with pytest.raises(SandboxError, match="0..1023"):
        gpt4.decode([5, 1024])
    with pytest.raises(SandboxError, match="token id -1"):
        gpt4.decode([-1])
    assert gpt4.decode(np.asarray(gpt4.encode("héllo"), dtype=np.int32)) == "héllo"


class CountingRanks(dict):
    """Counts rank look-ups: the work of the merge loop."""

    lookups = 0

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)


def test_long_piece_is_linear_in_lookups_and_matches_tiktoken(gpt4):
    rng = random.Random(0)
    piece = "".join(rng.choice("etaoinshrdlu") for _ in range(100_000))
    ranks = CountingRanks(gpt4.ranks)
    ids = merge_piece(piece.encode(), ranks)
    # n - 1 initial pairs plus at most 2 new candidates per merge (a quadratic rescan would not fit)
    assert ranks.lookups <= 3 * len(piece)
    assert ids == gpt4.to_tiktoken().encode_ordinary(piece)
    assert gpt4.decode(ids) == piece


def test_merge_steps_are_lowest_rank_leftmost_first():
    ranks = {bytes([b]): b for b in range(256)} | {b"aa": 256, b"ab": 257, b"aab": 258}
    steps = []
    ids = merge_piece(b"aaab", ranks, lambda i, m, e: steps.append((i, m, e)))
    # "aa" ranks lowest; of its two places the leftmost wins (the other overlaps it), then "ab";
    # "aab" is a token but never adjacent parts: aa+ab is not one
    assert steps == [(0, 1, 2), (2, 3, 4)]
    assert ids == [256, 257]


def _unpacked(packed: list[bytes]) -> list[list[int]]:
    return [np.frombuffer(b, np.int32).tolist() for b in packed]


def test_pair_ranks_are_the_ranks_of_concatenations(gpt4):
    pair_rank, rng = PairRanks(gpt4.ranks), np.random.default_rng(0)
    vocab = gpt4.vocab
    a, b = rng.integers(0, len(vocab), 20_000), rng.integers(0, len(vocab), 20_000)
    m = len(gpt4.merges)
    a[:m], b[:m] = np.array(gpt4.merges).T  # pairs that are tokens
    expected = [gpt4.ranks.get(vocab[x] + vocab[y], NONE) for x, y in zip(a.tolist(), b.tolist())]
    assert pair_rank(a, b).tolist() == expected
    assert sum(r != NONE for r in expected) >= m


def test_merge_pieces_together_is_merge_piece_on_each(gpt4, pydoc):
    rng = random.Random(0)
    pieces = [p.encode() for p in sorted(set(split(pydoc)))]  # real words, and below: ties, long runs
    pieces += [bytes(rng.choice(b"etaoin shrdlu") for _ in range(rng.randint(2, 150))) for _ in range(500)]
    pieces += [b"a" * n for n in range(2, 70)] + [b"\xe6\x97\xa5\xe6\x9c\xac", b"\xff\xfe"]
    assert _unpacked(merge_pieces(pieces, PairRanks(gpt4.ranks))) == [merge_piece(p, gpt4.ranks) for p in pieces]
    assert merge_pieces([], PairRanks(gpt4.ranks)) == []


def test_merge_pieces_when_a_merge_makes_a_lower_ranked_pair():
    # p+q, then a+b (260) makes the pair pq+ab, whose token ranks lower (259): it must merge next,
    # in every piece, whatever the other pieces in the same round do
    ranks = {bytes([b]): b for b in range(256)} | {b"pq": 256, b"qa": 257, b"qab": 258, b"pqab": 259, b"ab": 260}
    pieces = [b"pqab", b"pqabpqab", b"abpqab", b"qab", b"ab" * 5]
    expected = [merge_piece(p, ranks) for p in pieces]
    assert expected[:4] == [[259], [259, 259], [260, 259], [258]]
    assert _unpacked(merge_pieces(pieces, PairRanks(ranks), few=0)) == expected


# tokens over "abc" whose ranks make merges create lower-ranked pairs (ab then abc < bc, ...), so
# pieces finish at different rounds and sit, finished or half merged, between each other
_ABC_RANKS = {bytes([b]): b for b in range(256)} | {
    t.encode(): 256 + k for k, t in enumerate(["ab", "abc", "bc", "ca", "aa", "cab", "bca", "aab", "abca", "cc"])
}


# the same tokens made by a merge list in another order than their ids (HF's rule): b+c first, ...
_ABC_MERGES = [(b"b", b"c"), (b"a", b"b"), (b"c", b"a"), (b"ab", b"c"), (b"a", b"a"), (b"c", b"ab"), (b"b", b"ca"),
               (b"a", b"ab"), (b"ab", b"ca"), (b"c", b"c")]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text("abc", min_size=1, max_size=80), min_size=1, max_size=40), st.booleans())
def test_merge_pieces_is_merge_piece_on_random_pieces(words, by_list):
    pieces, merges = [w.encode() for w in words], _ABC_MERGES if by_list else None
    packed = merge_pieces(pieces, PairRanks(_ABC_RANKS, merges), few=0)
    merge_ranks = {pair: k for k, pair in enumerate(merges)} if by_list else None
    expected = [merge_piece(p, _ABC_RANKS, merge_ranks=merge_ranks) for p in pieces]
    assert [np.frombuffer(b, np.int32).tolist() for b in packed] == expected


def test_the_two_rules_differ_where_the_list_order_is_not_the_id_order():
    by_list = {pair: k for k, pair in enumerate(_ABC_MERGES)}
    assert merge_piece(b"abc", _ABC_RANKS) == [257]  # ab (256) first, then ab + c = abc (257)
    assert merge_piece(b"abc", _ABC_RANKS, merge_ranks=by_list) == [97, 258]  # b + c first; a + bc is not listed


def test_save_load_round_trip(tok, tmp_path, pydoc):
    path = tok.save(tmp_path / "tok.json")
    again = bpe.load(path)
    assert again.merges == tok.merges and again.vocab == tok.vocab
    assert again.special_tokens == tok.special_tokens and again.pattern == tok.pattern
    assert again.encode(pydoc[:20_000]) == tok.encode(pydoc[:20_000])
    assert json.loads(path.read_text())["merges"][0].count(" ") == 1  # readable, HF-style
    with pytest.raises(SandboxError, match="already exists"):
        tok.save(path, overwrite=False)
    tok.save(path)  # replaces it atomically
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left behind


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: "{not json", "corrupt"),
        (lambda d: {**d, "format": "other"}, "format"),
        (lambda d: {**d, "pattern": "gpt5"}, "gpt5"),
        (lambda d: {**d, "merges": d["merges"] + ["zz qq"]}, "merge #767"),
        (lambda d: {**d, "merges": ["a b c"]}, "merge #0"),
        (lambda d: {**d, "merges": ["\u4e00 b"]}, "alphabet"),
        (lambda d: {**d, "special_tokens": {EOT: 5}}, "special token ids"),
        (lambda d: [1, 2], "format"),
    ],
)
def test_corrupt_files_are_refused(gpt4, tmp_path, edit, match):
    d = edit(gpt4.to_dict())
    path = tmp_path / "bad.json"
    path.write_text(d if isinstance(d, str) else json.dumps(d))
    with pytest.raises(SandboxError, match=match):
        bpe.load(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(SandboxError, match="not found"):
        bpe.load(tmp_path / "nope.json")


def test_hf_export_encodes_the_same(tok, tmp_path, pydoc):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tok.to_hf(tmp_path / "tokenizer.json")))
    text = pydoc[:50_000] + EOT
    assert hf.encode(text).ids == tok.encode(text, allowed_special="all")
    assert hf.get_vocab_size() == tok.vocab_size
