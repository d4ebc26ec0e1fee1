"""Counting tokenizations: DP over the token lattice equals brute-force enumeration; LM scores."""

import itertools
import math

import jax
import numpy as np
import pytest
from jax import enable_x64

from sandbox.analysis.segmentations import segmentation_probabilities
from sandbox.nn.config import ModelConfig
from sandbox.nn.transformer import apply, init
from sandbox.text import bpe
from sandbox.text.corpus import load_text
from sandbox.text.segmentations import count_segmentations, segmentations, token_table


@pytest.fixture(scope="module")
def tok():
    return bpe.train(load_text("pydoc")[:60_000], 400, pattern="gpt4")


def _brute_force(data: bytes, table) -> set[tuple[int, ...]]:
    """Every way to cut data (2^(n-1) cut sets), kept when every piece is a token."""
    out = set()
    for cuts in itertools.product((False, True), repeat=len(data) - 1):
        pieces, start = [], 0
        for i, cut in enumerate(cuts, 1):
            if cut:
                pieces.append(data[start:i])
                start = i
        pieces.append(data[start:])
        if all(p in table for p in pieces):
            out.add(tuple(table[p] for p in pieces))
    return out


@pytest.mark.parametrize("text", ["the", "function", " return", "a = b", "ération", "1234567", "self.x"])
def test_count_and_list_equal_brute_force(tok, text):
    table = token_table(tok)
    data = text.encode("utf-8")
    expected = _brute_force(data, table)
    assert count_segmentations(data, table) == len(expected)
    listed = segmentations(data, table)
    assert set(map(tuple, listed)) == expected and len(listed) == len(expected)
    assert tuple(tok.encode(text)) in expected  # the canonical segmentation is one of them


def test_fibonacci_counts_with_exact_big_integers():
    table = {b"a": 0, b"aa": 1}
    fib = [0, 1]
    while len(fib) < 302:
        fib.append(fib[-1] + fib[-2])
    assert count_segmentations(b"a" * 300, table) == fib[301]  # 359579325206583560961765665172189099052367214634...
    assert count_segmentations(b"a" * 300, table) > 2**200
    assert count_segmentations(b"ab", table) == 0


def test_lm_probability_of_every_segmentation(tok):
    cfg = ModelConfig(vocab_size=tok.vocab_size, seq_len=16, d_model=16, n_layers=1, n_heads=2, d_ff=32, init_std=0.3)
    with enable_x64():
        params = init(jax.random.PRNGKey(0), cfg, dtype=np.float64)
        out = segmentation_probabilities(params, cfg, tok, "self")
        eot = tok.special_tokens[bpe.ENDOFTEXT]
        # reference: one forward pass with each row padded by random tokens instead of zeros
        segs = out["segmentations"]
        rows = np.random.default_rng(0).integers(0, 256, (len(segs), 6))
        for b, seg in enumerate(segs):
            rows[b, : len(seg) + 1] = [eot, *seg]
        logits = np.asarray(jax.jit(apply, static_argnames="cfg")(params, rows, cfg))
        logq = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        for b, (seg, logp) in enumerate(zip(segs, out["logprobs"])):
            assert logp == pytest.approx(sum(logq[b, k, t] for k, t in enumerate(seg)), abs=1e-10)
    assert len(out["segmentations"]) == count_segmentations(b"self", token_table(tok))
    assert out["segmentations"][out["canonical_index"]] == tok.encode("self")
    assert out["log_marginal"] == pytest.approx(math.log(sum(math.exp(v) for v in out["logprobs"])), abs=1e-9)
    assert 0 < out["canonical_share"] < 1


def test_tokenize_count_cli(tok, tmp_path, capsys):
    from sandbox.cli import main

    path = tok.save(tmp_path / "tok.json")
    assert main(["tokenize", "count", str(path), "self.x"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{len(_brute_force(b'self.x', token_table(tok)))} segmentations of 6 bytes")
    assert main(["tokenize", "count", str(path), "self", "--corpus", "pydoc"]) == 2
    assert "--corpus needs --out" in capsys.readouterr().err
