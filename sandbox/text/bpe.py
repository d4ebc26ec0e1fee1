"""Byte-level BPE tokenizer: train, encode, decode, save/load, export to tiktoken and HF.

A tokenizer is a split pattern (`pretokenize`), a merge list learned by `bpe_train` and a few
special tokens. Token ids are ranks: 0..255 the bytes (in GPT-2's byte-to-unicode order, as
HF), then one id per new token in the order it was merged, then the special tokens. Encoding
follows tiktoken exactly (`bpe_encode`), so `to_tiktoken()` encodes token for token the same.

    tok = train(text, vocab_size=4096, pattern="gpt4")
    ids = tok.encode(s); s == tok.decode(ids); tok.save(path); tok = load(path)
"""

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
_CACHE_SIZE = 1 << 18  # encoded pieces kept: real text keeps repeating the same pieces
_INT32 = struct.Struct("=i")  # native order, as array("i")


class Tokenizer:
    """Byte-level BPE with tiktoken's encoding semantics; build with `train` or `load`."""

    def __init__(self, pattern: str, merges: list[tuple[int, int]], special_tokens: list[str]):
        pattern_string(pattern)  # refuse an unknown split pattern now, not at the first encode
        self.pattern = pattern
        self.merges = list(merges)
        self.vocab = _replay(self.merges)  # vocab[id] = bytes of token id
        self.ranks = {t: i for i, t in enumerate(self.vocab)}
        self.special_tokens = {s: len(self.vocab) + k for k, s in enumerate(special_tokens)}
        if len(self.special_tokens) != len(special_tokens) or not all(isinstance(s, str) and s for s in special_tokens):
            raise SandboxError(f"special tokens {special_tokens} must be distinct non-empty strings")
        self._decoder = self.vocab + [s.encode("utf-8") for s in special_tokens]
        self._pair_rank = PairRanks(self.ranks)
        self._packed_ranks = {t: _INT32.pack(i) for i, t in enumerate(self.vocab)}
        self._cache: dict[str, bytes] = {}  # piece -> its ids packed as native int32

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

    def _encode_pieces(self, pieces: list[str]) -> list[bytes]:
        """Token ids of each piece, packed as native int32: the piece's own if it is a token, else
        its byte-pair merges."""
        data = [piece.encode("utf-8") for piece in pieces]
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
        """The readable JSON form: merges spelled in GPT-2's byte-level alphabet, as HF."""
        spell = [bytes_to_chars(t) for t in self.vocab]
        return {
            "format": FORMAT,
            "version": 1,
            "pattern": self.pattern,
            "regex": pattern_string(self.pattern),
            "special_tokens": self.special_tokens,
            "merges": [f"{spell[a]} {spell[b]}" for a, b in self.merges],
        }

    def save(self, path, overwrite: bool = True) -> Path:
        """Write the JSON file atomically (temp file + rename), so a reader never sees half a
        file; with overwrite=False refuse to replace an existing one."""
        return _write_atomic(
            path, lambda tmp: tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False)), overwrite
        )

    def to_tiktoken(self, name: str = "sandbox-bpe"):
        """A `tiktoken.Encoding` built offline from these ranks and special tokens."""
        import tiktoken

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
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != 1:
        raise ValueError(f"expected a JSON object with format {FORMAT!r} and version 1")
    if not isinstance(d.get("merges"), list) or not isinstance(d.get("special_tokens"), dict):
        raise ValueError("expected a list 'merges' and an object 'special_tokens'")
    pattern_string(d.get("pattern"))
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
    return regex.compile("|".join(regex.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def _write_atomic(path, write, overwrite: bool) -> Path:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SandboxError(f"{path} already exists: choose another path or allow overwriting it (--force)")
    if not path.parent.is_dir():
        raise SandboxError(f"folder {path.parent} does not exist: create it first")
    return replace_atomically(path, write)
