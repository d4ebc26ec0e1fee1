"""Regex-constrained sampling: every sample matches in full; canonical fraction; canonical-only mode."""

import jax
import pytest
import regex

from sandbox.errors import SandboxError
from sandbox.nn.config import ModelConfig
from sandbox.nn.transformer import init
from sandbox.sampling import GREEDY, is_canonical, sample_regex
from sandbox.text import bpe
from sandbox.text.corpus import load_text

DATE = r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
JSON = r'\{"id": \d{1,4}, "tag": "[a-z ]{2,6}"\}'


@pytest.fixture(scope="module")
def lm():
    tok = bpe.train(load_text("pydoc")[:60_000], 400, pattern="gpt4")
    cfg = ModelConfig(vocab_size=tok.vocab_size, seq_len=32, d_model=32, n_layers=1, n_heads=2, d_ff=64, init_std=0.5)
    return tok, cfg, init(jax.random.PRNGKey(0), cfg)


@pytest.mark.parametrize("pattern", [DATE, JSON])
def test_every_constrained_sample_matches_in_full(lm, pattern):
    tok, cfg, params = lm
    out = sample_regex(params, cfg, tok, pattern, tok.encode("Date: "), n=16, num_new=24, key=jax.random.PRNGKey(1))
    assert all(regex.fullmatch(pattern, t) for t in out["texts"]), out["texts"]
    assert all(out["matched"])
    assert out["canonical_fraction"] == sum(is_canonical(tok, ids) for ids in out["ids"]) / 16
    assert len(set(out["texts"])) > 1  # random draws, not one string


def test_tight_token_budget_still_completes(lm):
    tok, cfg, params = lm
    out = sample_regex(params, cfg, tok, r"[a-z]{3}\d{2}", tok.encode("x"), n=8, num_new=5, key=jax.random.PRNGKey(2))
    assert all(regex.fullmatch(r"[a-z]{3}\d{2}", t) for t in out["texts"])
    with pytest.raises(SandboxError, match="needs at least"):
        sample_regex(params, cfg, tok, r"\d{12}", tok.encode("x"), n=2, num_new=3, key=jax.random.PRNGKey(2))


def test_greedy_picks_the_most_likely_allowed_token(lm):
    tok, cfg, params = lm
    out = sample_regex(params, cfg, tok, DATE, tok.encode("Date: "), n=16, num_new=24,  # same shapes: no recompile
                       key=jax.random.PRNGKey(3), options=GREEDY)
    assert all(regex.fullmatch(DATE, t) for t in out["texts"])  # argmax over the allowed tokens only
    assert len(set(out["texts"])) == 1  # greedy is deterministic across rows


def test_canonical_only_mode_gives_canonical_matches(lm):
    tok, cfg, params = lm
    word = r"[a-z]{5,8}"
    free = sample_regex(params, cfg, tok, word, tok.encode("Name: "), n=16, num_new=24, key=jax.random.PRNGKey(4))
    assert free["canonical_fraction"] < 1  # this model spells words non-canonically: the mode must reject
    out = sample_regex(params, cfg, tok, word, tok.encode("Name: "), n=3, num_new=10, key=jax.random.PRNGKey(4),
                       canonical_only=True)
    assert all(regex.fullmatch(word, t) for t in out["texts"])
    assert out["canonical_fraction"] == 1.0
