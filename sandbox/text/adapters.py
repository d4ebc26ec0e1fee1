"""Tokenizer files from elsewhere read into a sandbox `bpe.Tokenizer`, offline: a Hugging Face
`tokenizer.json`, a tiktoken `.tiktoken` ranks file, a GGUF model file; `load_tokenizer` picks
the reader by the file's kind, so `sandbox tokenize` and the regex index take any of them.

- HF `tokenizer.json`, byte-level BPE only: the ids are the file's; merges follow HF's rule
  (listed pairs, earliest first; `ignore_merges` looks a whole piece up first); every added
  token is a special token, and "<|endoftext|>", if one, ends a text. The pre-tokenizer must be
  one the sandbox spells as a split pattern: `ByteLevel` (GPT-2's), `Digits(individual_digits=
  True)` + `ByteLevel` (SmolLM2's), or a `Split` on one of the sandbox's patterns + `ByteLevel`
  without its regex. A post-processor's BOS/EOS is not part of the text's encoding (HF's
  `add_special_tokens=False`).
- tiktoken `.tiktoken`: lines "base64(token bytes) rank"; the rank is the id and tiktoken's rule
  holds. The file holds no split pattern and no special tokens: give them (cl100k_base uses
  "gpt4", r50k_base and p50k_base "gpt2"). Merges, needed to export to HF, are recovered: the
  merge of a token is the two parts its bytes end in under the lower ranks alone.
"""

import base64
import binascii
import json
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.text import bpe
from sandbox.text.bpe_encode import merge_piece
from sandbox.text.pretokenize import PATTERNS, chars_to_bytes

TIKTOKEN_PATTERNS = {"r50k_base": "gpt2", "p50k_base": "gpt2", "cl100k_base": "gpt4"}


def load_tokenizer(path) -> bpe.Tokenizer:
    """Any tokenizer file the sandbox reads: its own JSON, an HF tokenizer.json, a .tiktoken
    file (split pattern named by its stem, else "gpt4") or a .gguf file."""
    path = Path(path)
    if path.suffix == ".gguf":
        from sandbox.text.bpe_gguf import from_gguf

        return from_gguf(path)
    if path.suffix == ".tiktoken":
        return from_tiktoken(path, TIKTOKEN_PATTERNS.get(path.stem, "gpt4"))
    if not path.is_file():
        raise SandboxError(f"tokenizer file {path} not found: train one with `sandbox tokenize train`")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SandboxError(f"tokenizer file {path} is not JSON: {e}") from None
    if isinstance(d, dict) and isinstance(d.get("model"), dict):
        return from_hf_dict(d, path)
    return bpe.load(path)


def from_hf_json(path) -> bpe.Tokenizer:
    """The byte-level BPE tokenizer of an HF `tokenizer.json`; SandboxError if it is not one."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SandboxError(f"tokenizer file {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SandboxError(f"tokenizer file {path} is not JSON: {e}") from None
    return from_hf_dict(d, path)


def from_hf_dict(d: dict, path) -> bpe.Tokenizer:
    """`from_hf_json` of the parsed file (`path` names it in errors)."""
    model = d.get("model") if isinstance(d, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise SandboxError(f"{path}: not an HF BPE tokenizer (model type {model and model.get('type')!r})")
    if d.get("normalizer") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") \
            or model.get("byte_fallback") or model.get("dropout"):
        raise SandboxError(f"{path}: a normalizer, subword affixes, byte fallback or dropout is not byte-level BPE")
    pattern = _pattern(d.get("pre_tokenizer"), path)
    try:
        added = {t["content"]: int(t["id"]) for t in d.get("added_tokens") or []}
        vocab: list[bytes | None] = [None] * (max([*model["vocab"].values(), *added.values()]) + 1)
        ids = {}
        for spelled, i in model["vocab"].items():
            if added.get(spelled) != i:
                vocab[i], ids[spelled] = chars_to_bytes(spelled), i
        merges = [(ids[a], ids[b]) for a, b in map(_pair, model["merges"])]
    except (KeyError, TypeError, ValueError, AttributeError, SandboxError) as e:
        raise SandboxError(f"{path}: not a byte-level BPE tokenizer.json ({type(e).__name__}: {e})") from None
    whole_pieces = bool(model.get("ignore_merges"))
    return bpe.Tokenizer(pattern, merges, added, vocab=vocab, rule="merges", whole_pieces=whole_pieces)


def _pair(merge) -> tuple[str, str]:
    """A merge as HF writes it: "left right" (older files) or ["left", "right"]."""
    parts = merge.split(" ") if isinstance(merge, str) else list(merge)
    if len(parts) != 2:
        raise ValueError(f"merge {merge!r} is not two tokens")
    return parts[0], parts[1]


def _pattern(pre: dict | None, path) -> str:
    """The sandbox split pattern of an HF pre-tokenizer; SandboxError if it has none."""
    steps = pre.get("pretokenizers", []) if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") if isinstance(s, dict) else None for s in steps]
    last = steps[-1] if steps and isinstance(steps[-1], dict) else {}
    if last.get("type") == "ByteLevel" and not last.get("add_prefix_space"):
        regex_step = last.get("use_regex", True)
        if kinds == ["ByteLevel"] and regex_step:
            return "gpt2"
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and regex_step:
            return "smollm"
        split = steps[0] if kinds == ["Split", "ByteLevel"] and not regex_step else {}
        source = split.get("pattern", {}).get("Regex")
        if split.get("behavior") == "Isolated" and not split.get("invert") and source in PATTERNS.values():
            return next(name for name, p in PATTERNS.items() if p == source)
    raise SandboxError(f"{path}: pre-tokenizer {kinds} is not one the sandbox can follow (ByteLevel; Digits + "
                       f"ByteLevel; Split on a pattern of {', '.join(PATTERNS)} + ByteLevel)")


def from_tiktoken(path, pattern: str = "gpt4", special_tokens: dict[str, int] | None = None) -> bpe.Tokenizer:
    """The tiktoken ranks file at `path` with split pattern `pattern` and `special_tokens`
    (default: none); SandboxError if the file is missing or not one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").split()
        ranks = {base64.b64decode(t, validate=True): int(r) for t, r in zip(lines[::2], lines[1::2], strict=True)}
    except FileNotFoundError:
        raise SandboxError(f"tiktoken file {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError, binascii.Error) as e:
        raise SandboxError(f"{path} is not a tiktoken file (lines 'base64 rank'): {e}") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise SandboxError(f"{path}: the ranks are not 0..{len(ranks) - 1}, each once")
    vocab = sorted(ranks, key=ranks.get)
    return bpe.Tokenizer(pattern, recovered_merges(vocab), dict(special_tokens or {}), vocab=vocab)


def recovered_merges(vocab: list[bytes]) -> list[tuple[int, int]]:
    """(left id, right id) of each token in rank order that the lower ranks merge into exactly two parts."""
    lower: dict[bytes, int] = {}
    merges = []
    for rank, token in enumerate(vocab):
        if len(token) > 1 and all(bytes([b]) in lower for b in token):
            parts = merge_piece(token, lower)
            if len(parts) == 2:
                merges.append((parts[0], parts[1]))
        lower[token] = rank
    return merges
