"""`sandbox tokenize ...` through `sandbox.cli.main`: outputs, files and exit codes."""

import json

import pytest

from sandbox.cli import main
from sandbox.text import bpe
from sandbox.text.bpe_inspect import stats
from sandbox.text.corpus import load_text


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(load_text("pydoc")[:60_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok_file(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tok.json"
    assert main(["tokenize", "train", str(corpus), "--vocab-size", "400", "--pattern", "gpt2", "--out", str(out)]) == 0
    return out


def test_train_writes_a_loadable_tokenizer(tok_file, corpus):
    tok = bpe.load(tok_file)
    assert tok.vocab_size == 400 and tok.pattern == "gpt2"
    assert tok.merges == bpe.train(corpus.read_text(), 400, pattern="gpt2").merges


def test_train_refuses_to_overwrite_unless_forced(tok_file, corpus, capsys):
    before = tok_file.read_text()
    argv = ["tokenize", "train", str(corpus), "--vocab-size", "300", "--out", str(tok_file)]
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err and tok_file.read_text() == before
    assert main([*argv, "--force"]) == 0
    assert bpe.load(tok_file).vocab_size == 300
    tok_file.write_text(before)


def test_encode_prints_the_ids(tok_file, capsys):
    text = "Return the value of x."
    assert main(["tokenize", "encode", str(tok_file), text]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ids: " + " ".join(map(str, bpe.load(tok_file).encode(text)))


def test_encode_special_tokens(tok_file, capsys):
    text = "a<|endoftext|>"
    assert main(["tokenize", "encode", str(tok_file), text]) == 2
    assert "not allowed" in capsys.readouterr().err
    assert main(["tokenize", "encode", str(tok_file), text, "--allow-special"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(" 399")


def test_explain_prints_each_merge(tok_file, capsys):
    assert main(["tokenize", "explain", str(tok_file), " definition"]) == 0
    out = capsys.readouterr().out
    (piece,) = bpe.load(tok_file).explain(" definition")
    assert out.count(" -> id ") == len(piece["steps"]) > 0
    assert out.splitlines()[-1] == "  ids: " + " ".join(map(str, piece["ids"]))


def test_stats_prints_the_measures(tok_file, corpus, capsys):
    assert main(["tokenize", "stats", str(tok_file), str(corpus)]) == 0
    rows = dict(line.split() for line in capsys.readouterr().out.splitlines())
    st = stats(bpe.load(tok_file), corpus.read_text())
    assert float(rows["bytes_per_token"]) == pytest.approx(st["bytes_per_token"], abs=1e-4)
    assert int(rows["n_tokens"]) == st["n_tokens"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "{corpus}", "--vocab-size", "100", "--out", "{tmp}/a.json"], ">= 257"),
        (
            ["train", "{tiny}", "--vocab-size", "300", "--out", "{tmp}/a.json"],
            "ran out of pairs to merge at 259 tokens",
        ),
        (["train", "{empty}", "--vocab-size", "300", "--out", "{tmp}/a.json"], "empty"),
        (["train", "{tmp}/missing.txt", "--vocab-size", "300", "--out", "{tmp}/a.json"], "not found"),
        (["encode", "{corrupt}", "x"], "corrupt"),
        (["explain", "{tmp}/missing.json", "x"], "not found"),
    ],
)
def test_bad_input_exits_2(argv, message, tmp_path, corpus, capsys):
    (tmp_path / "tiny.txt").write_text("abab")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "corrupt.json").write_text(json.dumps({"format": "sandbox-bpe", "version": 1, "merges": 3}))
    names = {
        "tmp": tmp_path,
        "corpus": corpus,
        "tiny": tmp_path / "tiny.txt",
        "empty": tmp_path / "empty.txt",
        "corrupt": tmp_path / "corrupt.json",
    }
    assert main(["tokenize", *(a.format(**names) for a in argv)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()
