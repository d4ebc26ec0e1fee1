"""The tokenizer stored in a GGUF file's metadata (llama.cpp's format), as a sandbox `bpe.Tokenizer`.

A byte-level BPE GGUF (`tokenizer.ggml.model` = "gpt2") lists every token spelled in GPT-2's
byte-level alphabet (`tokens`, the list index is the id), a type per token (1 normal, 3 control,
4 user-defined, ...), the merges as "left right" in rank order, and the name of its pre-tokenizer
(`tokenizer.ggml.pre`). The ids are the file's, so they index the model's embedding; control and
user-defined tokens become special tokens (matched whole, where allowed); encoding follows the
merge list (HF's and llama.cpp's rule, not tiktoken's: a pair merges iff listed, earliest
first). SmolLM2's merge order happens to follow its ids, and on the reference corpus tiktoken's
rule gives the same ids, but nothing here relies on it. The end-of-text token is the file's
`eos_token_id` (SmolLM2-Instruct: "<|im_end|>", id 2).

    tok = from_gguf(path); tok.encode("<|im_start|>user", allowed_special="all")
    tok = from_reader(gguf.GGUFReader(path))   # a reader already open for the weights: no second parse
"""

from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.text.bpe import ENDOFTEXT, Tokenizer
from sandbox.text.pretokenize import chars_to_bytes

PRE_TOKENIZERS = {"smollm": "smollm", "gpt-2": "gpt2"}  # llama.cpp's pre-tokenizer type -> split pattern
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4


def from_gguf(path) -> Tokenizer:
    """The byte-level BPE tokenizer in the metadata of the GGUF file at `path`; SandboxError
    if the file is missing or damaged, or its tokenizer is not one the sandbox can follow."""
    path = Path(path)
    if not path.is_file():
        raise SandboxError(f"GGUF file {path} not found")
    return from_fields(read_metadata(path, "tokenizer.ggml."), path)


def from_reader(reader) -> Tokenizer:
    """`from_gguf` of a file already open as a `gguf.GGUFReader` (its parse is most of the cost)."""
    return from_fields({k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.ggml.")}, "GGUF")


def from_fields(fields: dict, path) -> Tokenizer:
    """The tokenizer of the `tokenizer.ggml.*` metadata fields (`path` names the file in errors)."""
    model, pre = fields.get("tokenizer.ggml.model"), fields.get("tokenizer.ggml.pre", "default")
    if model != "gpt2":
        raise SandboxError(f"{path}: tokenizer model {model!r} is not byte-level BPE ('gpt2')")
    if pre not in PRE_TOKENIZERS:
        raise SandboxError(f"{path}: pre-tokenizer {pre!r} is not one the sandbox knows ({', '.join(PRE_TOKENIZERS)})")
    tokens, merges = fields.get("tokenizer.ggml.tokens"), fields.get("tokenizer.ggml.merges")
    types = fields.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens or ())
    if not tokens or merges is None or len(types) != len(tokens):
        raise SandboxError(f"{path}: the tokenizer metadata lacks tokens, token types or merges")
    special = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind in (CONTROL, USER_DEFINED)}
    vocab = [None if t in special and special[t] == i else chars_to_bytes(t) for i, t in enumerate(tokens)]
    ids = {t: i for i, t in enumerate(tokens) if vocab[i] is not None}
    pairs = [tuple(ids.get(p) for p in m.split(" ")) for m in merges]
    if (bad := next((m for m, p in zip(merges, pairs) if len(p) != 2 or None in p), None)) is not None:
        raise SandboxError(f"{path}: merge {bad!r} is not two tokens of the vocabulary")
    eos = fields.get("tokenizer.ggml.eos_token_id")
    eot = tokens[eos] if isinstance(eos, int) and 0 <= eos < len(tokens) and tokens[eos] in special else ENDOFTEXT
    return Tokenizer(PRE_TOKENIZERS[pre], pairs, special, vocab=vocab, rule="merges", whole_pieces=False, eot=eot)


def read_metadata(path: Path, prefix: str) -> dict:
    """The GGUF metadata fields whose names start with `prefix`, as Python values (gguf, llama.cpp's reader)."""
    try:
        import gguf
    except ImportError:
        raise SandboxError("reading GGUF files needs the gguf package: pip install gguf") from None
    try:
        reader = gguf.GGUFReader(path)
        return {k: f.contents() for k, f in reader.fields.items() if k.startswith(prefix)}
    except (ValueError, OSError, KeyError, IndexError, UnicodeDecodeError) as e:
        raise SandboxError(f"{path} is not a readable GGUF file: {e}") from None

