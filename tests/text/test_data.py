"""Corpora, the train/val split and batches."""

import os

import jax
import numpy as np
import pytest

from sandbox.errors import SandboxError
from sandbox.text import corpus
from sandbox.text.data import DataConfig, as_device, get_batch, load_dataset


def test_embedded_corpus_is_real_english_documentation():
    text = corpus.load_text("pydoc")
    assert len(text) > 300_000
    assert 'The "assert" statement' in text and "lambda" in text


def test_split_is_contiguous_and_disjoint():
    data = load_dataset(DataConfig(corpus="pydoc", val_fraction=0.1), seq_len=64)
    text = corpus.load_text("pydoc").encode()
    n_train, n_val = len(data.train_N), len(data.val_N)
    assert n_train + n_val == len(text)
    assert bytes(data.train_N.astype(np.uint8)) + bytes(data.val_N.astype(np.uint8)) == text
    assert n_val == pytest.approx(0.1 * len(text), rel=0.01)


def test_batches_are_shifted_windows_and_depend_only_on_key():
    ids = as_device(np.arange(1000))
    batch = get_batch(ids, jax.random.PRNGKey(0), batch_size=8, seq_len=16)
    np.testing.assert_array_equal(batch["targets"], batch["inputs"] + 1)
    again = get_batch(ids, jax.random.PRNGKey(0), batch_size=8, seq_len=16)
    np.testing.assert_array_equal(batch["inputs"], again["inputs"])
    other = get_batch(ids, jax.random.PRNGKey(1), batch_size=8, seq_len=16)
    assert not np.array_equal(batch["inputs"], other["inputs"])
    assert int(batch["targets"].max()) <= 999


def test_folder_corpus_and_bad_files(tmp_path):
    (tmp_path / "a.txt").write_text("alpha " * 50)
    (tmp_path / "b.txt").write_text("beta " * 50)
    assert corpus.load_text(str(tmp_path)).count("beta") == 50
    with pytest.raises(SandboxError, match="not found"):
        corpus.load_text(str(tmp_path / "missing.txt"))
    (tmp_path / "bad.bin").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(SandboxError, match="not valid UTF-8"):
        corpus.load_text(str(tmp_path / "bad.bin"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(SandboxError, match="empty"):
        corpus.load_text(str(tmp_path / "empty.txt"))
    os.mkfifo(tmp_path / "pipe")  # reading a pipe or /dev/zero would never end
    for endless in (tmp_path / "pipe", "/dev/zero"):
        with pytest.raises(SandboxError, match="not a regular file"):
            corpus.load_text(str(endless))


def test_sequence_longer_than_split(tmp_path):
    (tmp_path / "short.txt").write_text("a short corpus " * 20)
    with pytest.raises(SandboxError, match="seq_len"):
        load_dataset(DataConfig(corpus=str(tmp_path / "short.txt")), seq_len=64)
