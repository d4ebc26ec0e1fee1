"""HF tokenizer.json and tiktoken files read into sandbox tokenizers: ids equal to the library's own."""

import base64
import json
import random

import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from sandbox.errors import SandboxError
from sandbox.text import bpe
from sandbox.text.adapters import from_hf_json, from_tiktoken, load_tokenizer
from sandbox.text.corpus import load_text
from sandbox.text.pretokenize import pattern_string

TRICKY = "It's 2024: naïve café, 日本語, 한국어, 👍🏽 emoji,\n\n\t  indented   1234567 x²  <|endoftext|> done"


@pytest.fixture(scope="module")
def pydoc():
    return load_text("pydoc")


@pytest.fixture(scope="module")
def texts(pydoc):
    rng = random.Random(0)
    alphabet = list("abcxyz AZ09.,'\n\t") + ["é", "日", "😀", "'s", "  ", "１"]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    return [pydoc[:200_000], TRICKY, *fuzz]


@pytest.fixture(scope="module")
def hf_trained(pydoc, tmp_path_factory):
    """A byte-level BPE trained by HF itself: its ids put the special token first, its merges are HF's."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator([pydoc], trainer)
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    hf.save(str(path))
    return path


def test_hf_trained_tokenizer_encodes_as_hf(hf_trained, texts):
    hf, ours = HFTokenizer.from_file(str(hf_trained)), from_hf_json(hf_trained)
    assert (ours.vocab_size, ours.rule, ours.pattern) == (1500, "merges", "gpt2")
    assert ours.special_tokens == {"<|endoftext|>": 0} and ours.eot_id == 0
    for text in texts:
        ids = hf.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, allowed_special="all") == ids
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_sandbox_export_reads_back_and_encodes_as_hf(pydoc, texts, tmp_path, pattern):
    tok = bpe.train(pydoc, 800, pattern=pattern)
    path = tok.to_hf(tmp_path / "tokenizer.json")
    hf, ours = HFTokenizer.from_file(str(path)), load_tokenizer(path)
    assert ours.whole_pieces and ours.vocab == tok.vocab and ours.special_tokens == tok.special_tokens
    for text in texts:
        assert ours.encode(text, allowed_special="all") == hf.encode(text, add_special_tokens=False).ids


def test_hf_files_the_sandbox_cannot_follow_are_refused(hf_trained, tmp_path):
    d = json.loads(hf_trained.read_text())
    for edit, match in [
        (lambda d: d["model"].update(type="WordPiece"), "not an HF BPE"),
        (lambda d: d.update(normalizer={"type": "NFC"}), "normalizer"),
        (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), "pre-tokenizer"),
        (lambda d: d["pre_tokenizer"].update(add_prefix_space=True), "pre-tokenizer"),
        (lambda d: d["model"]["merges"].append("zzz qqq"), "not a byte-level BPE"),
    ]:
        bad = json.loads(json.dumps(d))
        edit(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(SandboxError, match=match):
            load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(SandboxError, match="not found"):
        from_hf_json(tmp_path / "none.json")


@pytest.fixture(scope="module")
def tiktoken_file(pydoc, tmp_path_factory):
    """A .tiktoken file as tiktoken's `dump_tiktoken_bpe` writes it (which needs blobfile)."""
    path = tmp_path_factory.mktemp("tiktoken") / "sandbox.tiktoken"
    ranks = bpe.train(pydoc, 1000, pattern="gpt4").ranks
    lines = [f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda x: x[1])]
    path.write_text("".join(lines))
    return path


def test_tiktoken_file_encodes_as_tiktoken(tiktoken_file, texts, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken reads the file without caching a copy
    specials = {"<|endoftext|>": 999}
    ranks = load_tiktoken_bpe(str(tiktoken_file))
    enc = tiktoken.Encoding("t", pat_str=pattern_string("gpt4"), mergeable_ranks=ranks, special_tokens=specials)
    ours = from_tiktoken(tiktoken_file, "gpt4", specials)
    assert ours.rule == "tiktoken" and ours.vocab_size == enc.n_vocab == 1000
    for text in texts:
        assert ours.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    # the recovered merges make the same tokenizer again, and HF encodes with them the same
    hf = HFTokenizer.from_file(str(ours.to_hf(tmp_path / "tokenizer.json")))
    assert bpe.Tokenizer("gpt4", ours.merges, ["<|endoftext|>"]).vocab == ours.vocab
    for text in texts[:50]:
        assert hf.encode(text).ids == enc.encode(text, allowed_special="all")


def test_bad_tiktoken_files_are_refused(tmp_path):
    for content, match in [("abc", "not a tiktoken file"), ("YQ== 0\nYg== 2\n", "ranks are not"), ("*** 0", "not a")]:
        (tmp_path / "bad.tiktoken").write_text(content)
        with pytest.raises(SandboxError, match=match):
            load_tokenizer(tmp_path / "bad.tiktoken")
    with pytest.raises(SandboxError, match="not found"):
        from_tiktoken(tmp_path / "none.tiktoken")


def test_version_2_files_round_trip_and_damaged_ones_are_refused(hf_trained, tmp_path):
    tok = from_hf_json(hf_trained)
    path = tok.save(tmp_path / "tok.json")
    again = bpe.load(path)
    assert again.to_dict() == tok.to_dict() and again.to_dict()["version"] == 2
    good = json.loads(path.read_text())
    for edit, match in [
        (lambda d: d.update(rule="greedy"), "unknown merge rule"),
        (lambda d: d.update(eot=None), "end-of-text token"),
        (lambda d: d["vocab"].__setitem__(5, d["vocab"][6]), "spelled once"),
        (lambda d: d["vocab"].__setitem__(0, "一"), "byte-level alphabet"),
        (lambda d: d.update(special_tokens={"<|endoftext|>": 7}), "taken or leaves a gap"),
        (lambda d: d["merges"].append("Ġ"), "merge #"),
    ]:
        bad = json.loads(json.dumps(good))
        edit(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(SandboxError, match=match):
            bpe.load(path)
