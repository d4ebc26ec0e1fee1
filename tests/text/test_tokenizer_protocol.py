"""Every tokenizer of the sandbox offers the `Tokenizer` protocol, and what takes a tokenizer (the
regex index, `sandbox tokenize explain|count`) works on each, HF and tiktoken files included."""

import base64

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, trainers

from sandbox.cli import main
from sandbox.cli.tokenize import PATTERNS as CLI_PATTERNS
from sandbox.text import bpe
from sandbox.text.adapters import load_tokenizer
from sandbox.text.constrained import regex_index
from sandbox.text.corpus import load_text
from sandbox.text.pretokenize import PATTERNS
from sandbox.text.tokenizer import ByteTokenizer, SymbolTokenizer, Tokenizer

TEXT = "The year 2024: naïve café 日本 👍🏽\n  x"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An HF-trained tokenizer.json and a .tiktoken file, both from 30,000 characters of pydoc."""
    folder, text = tmp_path_factory.mktemp("files"), load_text("pydoc")[:30_000]
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    hf.save(str(folder / "tokenizer.json"))
    ranks = bpe.train(text, 400, pattern="gpt2").ranks
    lines = [f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()]
    (folder / "r50k_base.tiktoken").write_text("".join(lines))
    return folder / "tokenizer.json", folder / "r50k_base.tiktoken"


@pytest.fixture(scope="module", params=["bytes", "symbols", "trained", "hf", "tiktoken"])
def tokenizer(request, files):
    return {
        "bytes": ByteTokenizer,
        "symbols": lambda: SymbolTokenizer(5),
        "trained": lambda: bpe.train(load_text("pydoc")[:30_000], 400, pattern="gpt4"),
        "hf": lambda: load_tokenizer(files[0]),
        "tiktoken": lambda: load_tokenizer(files[1]),
    }[request.param]()


def test_every_tokenizer_offers_the_protocol(tokenizer):
    assert isinstance(tokenizer, Tokenizer)
    spelled = tokenizer.token_bytes()
    assert len(spelled) == tokenizer.vocab_size
    text = "abcde" * 3 if isinstance(tokenizer, SymbolTokenizer) else TEXT
    ids = tokenizer.encode_ordinary(text)
    assert tokenizer.decode(ids) == text and tokenizer.encode(text) == ids
    assert b"".join(spelled[i] for i in ids) == text.encode()  # token_bytes spells what decode decodes
    eot = tokenizer.eot_id
    assert eot is None or spelled[eot] is None  # a special token spells no text


def test_the_regex_index_takes_every_tokenizer(tokenizer):
    pattern = "(ab|c)+d" if isinstance(tokenizer, SymbolTokenizer) else "[0-9]{3}-[a-z]+"
    index = regex_index(pattern, tokenizer)
    spelled, state = tokenizer.token_bytes(), index.initial
    text = "abcd" if isinstance(tokenizer, SymbolTokenizer) else "202-xyz"
    for t in tokenizer.encode_ordinary(text):  # the tokenizer's own encoding of a match is allowed throughout
        assert index.allowed(state)[t]
        state = index.advance(state, t)
    assert index.is_final(state)
    allowed = np.flatnonzero(index.allowed(index.initial))
    assert len(allowed) and all(spelled[t] and (spelled[t][:1].isdigit() or spelled[t] in (b"a", b"c"))
                                for t in allowed)


def test_hf_and_tiktoken_files_work_in_tokenize_explain_and_count(files, capsys):
    for path in files:
        assert main(["tokenize", "explain", str(path), " statement"]) == 0
        assert "ids:" in capsys.readouterr().out
        assert main(["tokenize", "count", str(path), "lambda"]) == 0
        assert "segmentations of 6 bytes" in capsys.readouterr().out
        assert main(["tokenize", "encode", str(path), "<|endoftext|>", "--allow-special"]) == 0
        out = capsys.readouterr().out  # the HF file's special token is id 0; the tiktoken file has none
        assert ("ids: 0\n" in out) == (path.suffix == ".json")


def test_the_cli_offers_every_split_pattern():
    assert CLI_PATTERNS == list(PATTERNS)
