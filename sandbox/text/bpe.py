"""Byte-level BPE tokenizer: train, encode, decode, save/load, export to tiktoken and HF.

A tokenizer is a split pattern (`pretokenize`), a merge list learned by `bpe_train` and a few
special tokens. Token ids are ranks: 0..255 the bytes (in GPT-2's byte-to-unicode order, as
HF), then one id per new token in the order it was merged, then the special tokens. Encoding
follows tiktoken exactly (`bpe_encode`), so `to_tiktoken()` encodes token for token the same.

A tokenizer read from elsewhere (a GGUF file, an HF `tokenizer.json`) keeps that file's ids
(`vocab` given: id -> bytes, None at a special token's id) and may follow Hugging Face's rule
(`rule="merges"`): a pair merges iff the merge list holds it, earliest first, whatever the ids;
a byte that is no token is dropped, as HF drops it.

    tok = train(text, vocab_size=4096, pattern="gpt4")
    ids = tok.encode(s); s == tok.decode(ids); tok.save(path); tok = load(path)
"""

import functools
import json
import operator
import struct
from array import array
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path

import regex

from sandbox.errors import SandboxError
from sandbox.files import replace_atomically
from sandbox.text.bpe_encode import PairRanks, merge_pieces
from sandbox.text.bpe_train import count_pieces, train_merges
from sandbox.text.pretokenize import BYTE_ORDER, bytes_to_chars, chars_to_bytes, pattern_string, split

FORMAT = "sandbox-bpe"
ENDOFTEXT = "<|endoftext|>"
RULES = ("tiktoken", "merges")
_CACHE_SIZE = 1 << 18  # encoded pieces kept: real text keeps repeating the same pieces
_INT32 = struct.Struct("=i")  # native order, as array("i")


class Tokenizer:
    """Byte-level BPE; build with `train`, `load` or an importer (`bpe_gguf`, `adapters`).

    `merges`: (left id, right id) pairs in rank order. `vocab`: bytes of every token id, None
    at the ids of `special_tokens` (a dict str -> id); without it the ids are replayed from the
    merges and `special_tokens` (a list) follow them. `rule`: "tiktoken" (a pair merges iff its
    bytes are a token, lowest id first; a piece that is a token is looked up whole) or
    "merges" (HF and llama.cpp: listed pairs only, in list order; `whole_pieces` is HF's
    `ignore_merges`). `eot`: the special token that ends a text."""

    def __init__(
        self,
        pattern: str,
        merges: list[tuple[int, int]],
        special_tokens,
        *,
        vocab: list[bytes | None] | None = None,
        rule: str = "tiktoken",
        whole_pieces: bool = True,
        eot: str = ENDOFTEXT,
    ):
        pattern_string(pattern)  # refuse an unknown split pattern now, not at the first encode
        if rule not in RULES:
            raise SandboxError(f"unknown merge rule {rule!r}: choose one of {', '.join(RULES)}")
        if not isinstance(eot, str):
            raise SandboxError(f"the end-of-text token {eot!r} must be a string")
        self.pattern, self.rule, self.eot = pattern, rule, eot
        self.whole_pieces = whole_pieces or rule == "tiktoken"
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.vocab = _replay(self.merges) if vocab is None else list(vocab)
        while self.vocab and self.vocab[-1] is None:  # special tokens after the last token: ids past the vocab
            self.vocab.pop()
        if vocab is None:
            if len(set(special_tokens)) != len(special_tokens):
                raise SandboxError(f"special tokens {special_tokens} must be distinct non-empty strings")
            special_tokens = {s: len(self.vocab) + k for k, s in enumerate(special_tokens)}
        self.special_tokens = dict(special_tokens)
        self._decoder = _decoder(self.vocab, self.special_tokens)
        self.ranks = {t: i for i, t in enumerate(self.vocab) if t is not None}
        if len(self.ranks) != sum(t is not None for t in self.vocab) or b"" in self.ranks:
            raise SandboxError("a token is empty or two ids have the same bytes: each token is spelled once")
        spelled = [(self._token(a), self._token(b)) for a, b in self.merges]
        if (bad := next((k for k, (a, b) in enumerate(spelled) if a + b not in self.ranks), None)) is not None:
            raise SandboxError(f"merge #{bad} {spelled[bad]} does not make a token of this vocabulary")
        self._pair_rank = PairRanks(self.ranks, spelled if rule == "merges" else None)
        self.dropped_bytes = bytes(b for b in range(256) if bytes([b]) not in self.ranks)  # HF skips them
        self._packed_ranks = {t: _INT32.pack(i) for t, i in self.ranks.items()} if self.whole_pieces else {}
        self._cache: dict[str, bytes] = {}  # piece -> its ids packed as native int32

    def _token(self, i: int) -> bytes:
        t = self.vocab[i] if 0 <= i < len(self.vocab) else None
        if t is None:
            raise SandboxError(f"a merge uses id {i}, which is no ordinary token")
        return t

    @property
    def vocab_size(self) -> int:
        """Number of token ids: byte tokens + merged tokens + special tokens."""
        return len(self._decoder)

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text`, reading special tokens as ordinary text (tiktoken's name)."""
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:  # lone surrogates: like tiktoken, make them U+FFFD first
            return self._encode_ordinary(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    def _encode_ordinary(self, text: str) -> list[int]:
        pieces = split(text, self.pattern)
        cache, lookup = self._cache, _getter(pieces)
        try:
            packed = b"".join(lookup(cache))
        except KeyError:  # pieces not seen before: encode each new one once
            seen = set(pieces)
            new = [piece for piece in seen if piece not in cache]
            if len(cache) + len(new) > _CACHE_SIZE:  # full: start afresh with this text's pieces
                cache.clear()
                new = list(seen)
            cache.update(zip(new, self._encode_pieces(new)))
            packed = b"".join(lookup(cache))
        return array("i", packed).tolist()

    def encode(self, text: str, allowed_special=frozenset(), disallowed_special="all") -> list[int]:
        """Token ids of `text`, with tiktoken's rules for special tokens: those in
        `allowed_special` ("all" or a set) become their id; text holding a disallowed one
        ("all" = every special token not allowed) is refused; the rest is ordinary text."""
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        if unknown := allowed - set(self.special_tokens):
            raise SandboxError(
                f"unknown special tokens {sorted(unknown)}: this tokenizer has {sorted(self.special_tokens)}"
            )
        disallowed = set(self.special_tokens) - allowed if disallowed_special == "all" else set(disallowed_special)
        if disallowed and (m := _alternation(disallowed).search(text)):
            raise SandboxError(
                f"text contains the special token {m.group()!r} at character {m.start()}, which is not "
                "allowed: allow it (allowed_special / --allow-special) to encode it as one special "
                "token, or disallowed_special=() to encode it as plain text"
            )
        if not allowed:
            return self.encode_ordinary(text)
        ids, start = [], 0
        for m in _alternation(allowed).finditer(text):
            ids += self.encode_ordinary(text[start : m.start()])
            ids.append(self.special_tokens[m.group()])
            start = m.end()
        return ids + self.encode_ordinary(text[start:])

    @property
    def eot_id(self) -> int | None:
        """The id of the end-of-text token, None if this tokenizer has none."""
        return self.special_tokens.get(self.eot)

    def token_bytes(self) -> list[bytes | None]:
        """Bytes of every token id, None for the special tokens."""
        return [self.vocab[i] if i < len(self.vocab) else None for i in range(self.vocab_size)]

    @property
    def merge_ranks(self) -> dict[tuple[bytes, bytes], int] | None:
        """(left, right) -> place in the merge list under the merge-list rule; None under tiktoken's."""
        return self._pair_rank.merge_ranks

    def piece_bytes(self, piece: str, errors: str = "strict") -> bytes:
        """The UTF-8 bytes of a piece that the merges start from: those that are no token dropped."""
        data = piece.encode("utf-8", errors)
        return data.translate(None, self.dropped_bytes) if self.dropped_bytes else data

    def _encode_pieces(self, pieces: list[str]) -> list[bytes]:
        """Token ids of each piece, packed as native int32: the piece's own if it is a token (and
        whole pieces are looked up), else its byte-pair merges."""
        data = list(map(self.piece_bytes, pieces))
        out = list(map(self._packed_ranks.get, data))
        todo = [i for i, packed in enumerate(out) if packed is None]
        for i, packed in zip(todo, merge_pieces([data[i] for i in todo], self._pair_rank)):
            out[i] = packed
        return out

    def decode_bytes(self, ids) -> bytes:
        """The bytes the token ids (ints, or numpy / JAX integer arrays) stand for."""
        try:
            ids = ids if isinstance(ids, list) else [operator.index(i) for i in ids]
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join([self._decoder[i] for i in ids])
        except (IndexError, TypeError):
            bad = next(i for i in ids if not self._is_id(i))
            raise SandboxError(f"token id {bad!r} is not in this tokenizer: ids run 0..{self.vocab_size - 1}") from None

    def _is_id(self, i) -> bool:
        try:
            return 0 <= operator.index(i) < self.vocab_size
        except TypeError:
            return False

    def decode(self, ids, errors: str = "replace") -> str:
        """The text of the token ids; invalid UTF-8 (a cut multi-byte character) becomes U+FFFD
        with errors="replace", or raises SandboxError with errors="strict"."""
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            raise SandboxError(
                f"token ids decode to invalid UTF-8 at byte {e.start} ({e.reason}); use errors='replace'"
            ) from None

    def explain(self, word: str) -> list[dict]:
        """How `word` is encoded, piece by piece and merge by merge (see `bpe_inspect`)."""
        from sandbox.text.bpe_inspect import explain

        return explain(self, word)

    def to_dict(self) -> dict:
        """The readable JSON form: merges spelled in GPT-2's byte-level alphabet, as HF. Version 1
        when the ids are the replayed merges' (a trained tokenizer), else version 2, which also
        spells every id (`vocab`, null at a special token's) and names the merge rule."""
        spell = [None if t is None else bytes_to_chars(t) for t in self.vocab]
        d = {
            "format": FORMAT,
            "version": 1,
            "pattern": self.pattern,
            "regex": pattern_string(self.pattern),
            "special_tokens": self.special_tokens,
            "merges": [f"{spell[a]} {spell[b]}" for a, b in self.merges],
        }
        if self._is_replayed():
            return d
        return d | {"version": 2, "rule": self.rule, "whole_pieces": self.whole_pieces, "eot": self.eot, "vocab": spell}

    def _is_replayed(self) -> bool:
        """True iff `Tokenizer(pattern, merges, special tokens in id order)` rebuilds this one."""
        return (
            self.rule == "tiktoken"
            and self.eot == ENDOFTEXT
            and self.vocab == _replay(self.merges)
            and sorted(self.special_tokens.values()) == list(range(len(self.vocab), self.vocab_size))
        )

    def save(self, path, overwrite: bool = True) -> Path:
        """Write the JSON file atomically (temp file + rename), so a reader never sees half a
        file; with overwrite=False refuse to replace an existing one."""
        return _write_atomic(
            path, lambda tmp: tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False)), overwrite
        )

    def to_tiktoken(self, name: str = "sandbox-bpe"):
        """A `tiktoken.Encoding` built offline from these ranks and special tokens."""
        import tiktoken

        if self.rule != "tiktoken":
            raise SandboxError("this tokenizer merges by its merge list (HF's rule), which tiktoken cannot express")
        return tiktoken.Encoding(
            name, pat_str=pattern_string(self.pattern), mergeable_ranks=self.ranks, special_tokens=self.special_tokens
        )

    def to_hf(self, path, overwrite: bool = True) -> Path:
        """Write a Hugging Face `tokenizer.json` (same ids, pattern and merges) atomically."""
        from sandbox.text.bpe_hf import hf_tokenizer

        return _write_atomic(path, lambda tmp: hf_tokenizer(self).save(str(tmp)), overwrite)


def train(text: str, vocab_size: int, pattern: str = "gpt4", special_tokens=(ENDOFTEXT,)) -> Tokenizer:
    """Learn a byte-level BPE tokenizer of `vocab_size` ids (special tokens included) on `text`."""
    if not text:
        raise SandboxError("the corpus is empty: give some text to train the tokenizer on")
    n_special = len(special_tokens)
    if vocab_size < 256 + n_special:
        raise SandboxError(
            f"vocab size {vocab_size} is too small: it must hold the 256 byte tokens and {n_special} "
            f"special token(s), so >= {256 + n_special}"
        )
    merges, vocab = train_merges(count_pieces(text, pattern), vocab_size - n_special)
    if len(vocab) + n_special < vocab_size:
        reached = len(vocab) + n_special
        raise SandboxError(
            f"vocab size {vocab_size} is more than this corpus can reach: it ran out of pairs to merge "
            f"at {reached} tokens ({n_special} special); give a vocab size <= {reached} or more text"
        )
    return Tokenizer(pattern, merges, list(special_tokens))


def load(path) -> Tokenizer:
    """Read a tokenizer file written by `Tokenizer.save`; SandboxError if it is not one."""
    path = Path(path)
    try:
        return from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SandboxError(f"tokenizer file {path} not found: train one with `sandbox tokenize train`") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, SandboxError) as e:  # JSONDecodeError is a ValueError
        raise SandboxError(f"tokenizer file {path} is corrupt or not a sandbox BPE file: {e}") from None


def from_dict(d) -> Tokenizer:
    """Inverse of `Tokenizer.to_dict`; ValueError naming the first thing that is wrong."""
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") not in (1, 2):
        raise ValueError(f"expected a JSON object with format {FORMAT!r} and version 1 or 2")
    if not isinstance(d.get("merges"), list) or not isinstance(d.get("special_tokens"), dict):
        raise ValueError("expected a list 'merges' and an object 'special_tokens'")
    pattern_string(d.get("pattern"))
    if d["version"] == 2:
        return _from_dict_v2(d)
    ids = {t: i for i, t in enumerate(_replay([]))}
    merges = []
    for k, m in enumerate(d["merges"]):
        parts = m.split(" ") if isinstance(m, str) else []
        pair = tuple(ids.get(chars_to_bytes(p)) for p in parts)
        if len(pair) != 2 or None in pair:
            raise ValueError(f"merge #{k} {m!r} is not two earlier tokens separated by one space")
        ids.setdefault(chars_to_bytes("".join(parts)), len(ids))
        merges.append(pair)
    specials = d["special_tokens"]
    tok = Tokenizer(d["pattern"], merges, sorted(specials, key=lambda s: specials[s]))
    if tok.special_tokens != specials:
        raise ValueError(
            f"special token ids {specials} should be {len(tok.vocab)}, {len(tok.vocab) + 1}, ... after the ranks"
        )
    return tok


def _from_dict_v2(d) -> Tokenizer:
    """A version-2 dict: every id spelled, merges looked up by spelling."""
    if not isinstance(d.get("vocab"), list) or not all(t is None or isinstance(t, str) for t in d["vocab"]):
        raise ValueError("expected a list 'vocab' of spelled tokens (null at special tokens)")
    vocab = [None if t is None else chars_to_bytes(t) for t in d["vocab"]]
    ids = {t: i for i, t in enumerate(d["vocab"]) if t is not None}
    merges = []
    for k, m in enumerate(d["merges"]):
        pair = tuple(ids.get(p) for p in m.split(" ")) if isinstance(m, str) else ()
        if len(pair) != 2 or None in pair:
            raise ValueError(f"merge #{k} {m!r} is not two tokens separated by one space")
        merges.append(pair)
    return Tokenizer(
        d["pattern"], merges, d["special_tokens"], vocab=vocab, rule=d.get("rule"),
        whole_pieces=d.get("whole_pieces") is True, eot=d.get("eot"),
    )


def _decoder(vocab: list[bytes | None], special_tokens: dict[str, int]) -> list[bytes]:
    """Bytes of every id: the token's, or the special token's UTF-8; SandboxError unless every
    id is exactly one of the two."""
    decoder = list(vocab)
    if bad := [(s, i) for s, i in special_tokens.items() if not (isinstance(s, str) and s and type(i) is int)]:
        raise SandboxError(f"special tokens {bad} must be distinct non-empty strings with integer ids")
    for s, i in sorted(special_tokens.items(), key=lambda item: item[1]):
        if i == len(decoder):
            decoder.append(None)
        if not (0 <= i < len(decoder)) or decoder[i] is not None:
            raise SandboxError(f"special token {s!r} has id {i}, which is taken or leaves a gap")
        decoder[i] = s.encode("utf-8")
    if None in decoder:
        raise SandboxError(f"token id {decoder.index(None)} is neither a token nor a special token")
    return decoder


def _replay(merges) -> list[bytes]:
    """Bytes of every token: the 256 bytes, then each merge's result unless already a token."""
    vocab = [bytes([b]) for b in BYTE_ORDER]
    known = set(vocab)
    for a, b in merges:
        t = vocab[a] + vocab[b]
        if t not in known:
            known.add(t)
            vocab.append(t)
    return vocab


def _getter(keys: list) -> Callable[[dict], tuple]:
    """itemgetter(*keys), one C call for all the lookups, but always giving a tuple."""
    return itemgetter(*keys) if len(keys) > 1 else lambda d: tuple(d[k] for k in keys)


def _alternation(tokens) -> regex.Pattern:
    """A regex matching any of the literal `tokens`, longest first."""
    return _compiled_alternation(frozenset(tokens))


@functools.lru_cache(maxsize=64)
def _compiled_alternation(tokens: frozenset) -> regex.Pattern:
    return regex.compile("|".join(regex.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t))))


def _write_atomic(path, write, overwrite: bool) -> Path:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SandboxError(f"{path} already exists: choose another path or allow overwriting it (--force)")
    if not path.parent.is_dir():
        raise SandboxError(f"folder {path.parent} does not exist: create it first")
    return replace_atomically(path, write)
