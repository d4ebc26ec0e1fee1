"""Turning text into token ids: raw UTF-8 bytes, or a byte-level BPE trained on the train split.

Every tokenizer of the sandbox (`ByteTokenizer`, `SymbolTokenizer`, `bpe.Tokenizer`, and so the
GGUF, HF `tokenizer.json` and tiktoken files read into one) offers the `Tokenizer` protocol;
code that takes a tokenizer uses only that.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sandbox import validate
from sandbox.errors import SandboxError

KINDS = ("bytes", "bpe")


@dataclass
class TokenizerConfig:
    kind: str = "bytes"  # "bytes" or "bpe"
    vocab_size: int = 512  # bpe only
    pattern: str = "gpt4"  # bpe only: a split pattern of pretokenize.PATTERNS

    def __post_init__(self):
        validate.one_of("data.tokenizer", "kind", self.kind, KINDS)
        validate.positive_int("data.tokenizer", "vocab_size", self.vocab_size)


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> token ids 0..vocab_size-1. `encode` reads special tokens as the tokenizer's rules
    say, `encode_ordinary` as plain text; decode(encode(text)) == text for text the tokenizer
    can spell. `token_bytes()[i]`: the bytes id i spells (None for a special token, which is
    no text); `eot_id`: the end-of-text token's id, None if there is none."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int | None: ...

    def encode(self, text: str) -> list[int]: ...

    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode(self, ids) -> str: ...

    def token_bytes(self) -> list[bytes | None]: ...


class ByteTokenizer:
    """Each UTF-8 byte is a token (vocab 256); decoding replaces invalid UTF-8 with U+FFFD."""

    vocab_size = 256
    eot_id = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    encode_ordinary = encode  # no special tokens

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self) -> list[bytes]:
        return [bytes([i]) for i in range(256)]


class SymbolTokenizer:
    """Synthetic sources: symbol i is token i, shown as a letter."""

    eot_id = None

    def __init__(self, alphabet: int):
        self.vocab_size = alphabet

    def encode(self, text: str) -> list[int]:
        return [ord(c) - ord("a") for c in text]

    encode_ordinary = encode  # no special tokens

    def decode(self, ids) -> str:
        return "".join(chr(ord("a") + int(i)) for i in ids)

    def token_bytes(self) -> list[bytes]:
        return [chr(ord("a") + i).encode("utf-8") for i in range(self.vocab_size)]


def make_tokenizer(cfg: TokenizerConfig, train_text: str | None, alphabet: int = 0):
    """A new tokenizer: symbols of a synthetic source (no text), raw bytes, or a BPE trained on `train_text`."""
    if train_text is None:
        return SymbolTokenizer(alphabet)
    if cfg.kind == "bytes":
        return ByteTokenizer()
    from sandbox.text import bpe

    return bpe.train(train_text, vocab_size=cfg.vocab_size, pattern=cfg.pattern)


def run_tokenizer(data_cfg, run_dir: Path):
    """The tokenizer a finished run was trained with, read back from its folder."""
    if data_cfg.corpus == "markov":
        return SymbolTokenizer(data_cfg.markov.alphabet)
    if data_cfg.tokenizer.kind == "bytes":
        return ByteTokenizer()
    from sandbox.text import bpe

    path = Path(run_dir) / "tokenizer.json"
    if not path.is_file():
        raise SandboxError(f"{run_dir} was trained with a BPE tokenizer but holds no tokenizer.json")
    return bpe.load(path)


def save_tokenizer(tok, run_dir: Path) -> None:
    """Cache a trained tokenizer in the run folder (byte and symbol tokenizers need no file)."""
    if hasattr(tok, "save"):
        tok.save(run_dir / "tokenizer.json")
