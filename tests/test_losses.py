"""Tests for sandbox.losses against optax, float64 references and information-theory identities."""

import math

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import losses

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((4, 6, 11), np.float32) * 3
LABELS = RNG.integers(0, 11, (4, 6))


def test_log_softmax_and_softmax_match_jax_nn():
    chex.assert_trees_all_close(losses.log_softmax(LOGITS), jax.nn.log_softmax(LOGITS), atol=1e-5)
    chex.assert_trees_all_close(losses.softmax(LOGITS).sum(-1), jnp.ones((4, 6)), atol=1e-6)


def test_cross_entropy_matches_optax():
    expected = optax.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS)
    chex.assert_trees_all_close(losses.cross_entropy(LOGITS, LABELS), expected, atol=1e-5)


def test_label_smoothing_matches_optax_smooth_labels():
    targets = optax.smooth_labels(jax.nn.one_hot(LABELS, 11), 0.1)
    expected = optax.softmax_cross_entropy(LOGITS, targets)
    chex.assert_trees_all_close(losses.cross_entropy(LOGITS, LABELS, label_smoothing=0.1), expected, atol=1e-5)


def test_z_loss_adds_squared_log_partition():
    log_z = np.log(np.exp(LOGITS.astype(np.float64)).sum(-1))
    extra = losses.cross_entropy(LOGITS, LABELS, z_loss=1e-2) - losses.cross_entropy(LOGITS, LABELS)
    np.testing.assert_allclose(extra, 1e-2 * log_z**2, rtol=1e-4)


def test_mean_cross_entropy_respects_mask():
    mask = np.zeros((4, 6), bool)
    mask[:, :2] = True
    per_position = losses.cross_entropy(LOGITS, LABELS)
    np.testing.assert_allclose(losses.mean_cross_entropy(LOGITS, LABELS, mask), per_position[:, :2].mean(), rtol=1e-6)
    np.testing.assert_allclose(losses.mean_cross_entropy(LOGITS, LABELS), per_position.mean(), rtol=1e-6)


def test_huge_float32_logits_are_finite_and_match_float64():
    big = (LOGITS * 1e4 / 9).astype(np.float32)  # magnitudes up to ~1e4
    with jax.enable_x64(True):
        ref = {
            "ce": losses.cross_entropy(big.astype(np.float64), LABELS, label_smoothing=0.1, z_loss=1e-4),
            "entropy": losses.entropy(big.astype(np.float64)),
            "kl": losses.kl_divergence(big.astype(np.float64), big[::-1].astype(np.float64)),
        }
        assert ref["ce"].dtype == jnp.float64
    got = {
        "ce": losses.cross_entropy(big, LABELS, label_smoothing=0.1, z_loss=1e-4),
        "entropy": losses.entropy(big),
        "kl": losses.kl_divergence(big, big[::-1]),
    }
    for name in got:
        assert got[name].dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(got[name]))), name
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=2e-2, err_msg=name)
    assert float(jnp.max(got["ce"])) > 1e3  # the check was not vacuous


def test_bf16_logits_are_computed_in_float32():
    assert losses.cross_entropy(LOGITS.astype(jnp.bfloat16), LABELS).dtype == jnp.float32


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(np.float64, (2, 5), elements=st.floats(-20, 20)),
    hnp.arrays(np.float64, (2, 5), elements=st.floats(-20, 20)),
)
def test_kl_is_nonnegative_and_zero_on_equal_arguments(p, q):
    with jax.enable_x64(True):
        assert float(jnp.min(losses.kl_divergence(p, q))) >= -1e-12
        np.testing.assert_allclose(losses.kl_divergence(p, p), 0.0, atol=1e-12)
        # KL = cross-entropy(p, q) - entropy(p), computed independently in numpy
        pp, lq = np.exp(p - p.max(-1, keepdims=True)), q - np.log(np.exp(q).sum(-1, keepdims=True))
        pp /= pp.sum(-1, keepdims=True)
        np.testing.assert_allclose(
            losses.kl_divergence(p, q), -(pp * lq).sum(-1) - losses.entropy(p), rtol=1e-9, atol=1e-9
        )


def test_entropy_of_uniform_is_log_v_and_of_one_hot_is_zero():
    np.testing.assert_allclose(losses.entropy(jnp.full((3, 50), 7.0)), np.full(3, math.log(50)), rtol=1e-6)
    one_hot_logits = jnp.where(jnp.arange(5) == 2, 0.0, -jnp.inf)
    assert float(losses.entropy(one_hot_logits)) == 0.0  # -inf logits count as p log p = 0, not NaN
    assert float(losses.entropy(jnp.array([0.0, 0.0, -jnp.inf]))) == pytest.approx(math.log(2))


def test_perplexity_is_exp_of_mean_cross_entropy():
    assert float(losses.perplexity(jnp.log(jnp.float32(256.0)))) == pytest.approx(256.0, rel=1e-5)
    # uniform predictions over V tokens have perplexity V
    uniform_ce = losses.mean_cross_entropy(jnp.zeros((3, 7)), jnp.array([0, 3, 6]))
    assert float(losses.perplexity(uniform_ce)) == pytest.approx(7.0, rel=1e-5)
