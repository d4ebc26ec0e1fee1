"""Calibration metrics by hand, temperature scaling, and bad input to the Bayes toolkit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import bayes
from sandbox.bayes import posterior
from sandbox.bayes.calibration import bootstrap
from sandbox.errors import SandboxError
from sandbox.nn import plain_mlp

PROBS = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
LABELS = np.array([0, 0, 1, 1])


def test_metrics_by_hand():
    # confidences 0.9, 0.6, 0.8, 0.7; correct 1, 1, 0, 1. Two bins (0, .5], (.5, 1]: all in bin 2,
    # accuracy 3/4, mean confidence 0.75 -> ECE 0. Four bins: (.5,.75] holds 0.6, 0.7 (acc 1, conf .65),
    # (.75, 1] holds 0.9, 0.8 (acc .5, conf .85): ECE = .5 * .35 + .5 * .35 = .35, MCE = .35.
    assert float(bayes.ece(PROBS, LABELS, num_bins=2)) == pytest.approx(0.0, abs=1e-7)
    assert float(bayes.ece(PROBS, LABELS, num_bins=4)) == pytest.approx(0.35, abs=1e-6)
    assert float(bayes.mce(PROBS, LABELS, num_bins=4)) == pytest.approx(0.35, abs=1e-6)
    # equal-mass, two bins: {0.6, 0.7} and {0.8, 0.9}, the same split
    assert float(bayes.ece(PROBS, LABELS, num_bins=2, binning="mass")) == pytest.approx(0.35, abs=1e-6)
    assert float(bayes.nll(PROBS, LABELS)) == pytest.approx(-np.log([0.9, 0.6, 0.2, 0.7]).mean(), rel=1e-6)
    assert float(bayes.brier(PROBS, LABELS)) == pytest.approx((0.02 + 0.32 + 1.28 + 0.18) / 4, rel=1e-6)



def test_paired_difference_by_hand():
    # per-point NLLs of two predictives on the same points; d = (-log .9 + log .8, ..., -log .7 + log .3)
    other = np.array([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5], [0.7, 0.3]])
    d = -np.log([0.9, 0.6, 0.2, 0.7]) + np.log([0.8, 0.6, 0.5, 0.3])
    mean, se = bayes.paired_difference(bayes.nll_per_point(PROBS, LABELS), bayes.nll_per_point(other, LABELS))
    assert mean == pytest.approx(d.mean(), rel=1e-5)  # float32 logs
    assert se == pytest.approx(np.sqrt(np.sum((d - d.mean()) ** 2) / 3 / 4), rel=1e-5)


def test_calibrated_sampling_has_small_ece_and_temperature_recovers_scale():
    k1, k2 = jax.random.split(jax.random.key(0))
    logits = 2.0 * jax.random.normal(k1, (20000, 5))
    labels = jax.random.categorical(k2, logits)
    assert float(bayes.ece(jax.nn.softmax(logits), labels)) < 0.02
    assert float(bayes.ece(jax.nn.softmax(3 * logits), labels)) > 0.1  # overconfident
    t = float(bayes.fit_temperature(3 * logits, labels))
    assert t == pytest.approx(3.0, rel=0.05)


def model_fn(p, x):
    return plain_mlp.apply(p, x, "relu")


@pytest.fixture(scope="module")
def small():
    params = plain_mlp.init(jax.random.key(0), [2, 3, 2])
    return params, jnp.ones((4, 2)), jnp.array([0, 1, 0, 1])


@pytest.mark.parametrize("kwargs, words", [
    ({"structure": "dense"}, "unknown structure 'dense'"),
    ({"likelihood": "poisson"}, "unknown likelihood 'poisson'"),
    ({"subset": ["layer_9"]}, "unknown parameter block 'layer_9'"),
    ({"prior_precision": 0.0}, "prior_precision must be positive"),
    ({"prior_precision": [1.0, 2.0]}, "one value per parameter leaf (4)"),
    ({"curvature": "hessian", "structure": "diag"}, "use curvature='ggn' or 'fisher'"),
])
def test_bad_input_one_clear_message(small, kwargs, words):
    params, x, y = small
    with pytest.raises(SandboxError, match=None) as err:
        bayes.laplace(model_fn, params, (x, y), **kwargs)
    assert words in str(err.value)


def test_full_too_large_and_nan(small, monkeypatch):
    params, x, y = small
    monkeypatch.setattr(posterior, "FULL_MAX_BYTES", 100)
    with pytest.raises(SandboxError, match="use structure='kron', 'diag' or 'lowrank'"):
        bayes.laplace(model_fn, params, (x, y))
    bad = jax.tree_util.tree_map(lambda a: a.at[0].set(jnp.nan), params)
    with pytest.raises(SandboxError, match="NaN"):
        bayes.laplace(model_fn, bad, (x, y), structure="diag")


def test_bootstrap_error_of_the_nll_is_its_standard_error():
    """For a mean, the bootstrap's standard error tends to std / sqrt(N) (the CLT's), within its own noise."""

    key_p, key_y, key_b = jax.random.split(jax.random.key(0), 3)
    probs = jax.nn.softmax(2 * jax.random.normal(key_p, (2000, 5)), -1)
    labels = jax.random.randint(key_y, (2000,), 0, 5)
    se = bootstrap(probs, labels, key_b, num_resamples=400)
    per_point = np.asarray(bayes.nll_per_point(probs, labels), np.float64)
    assert se["nll"] == pytest.approx(per_point.std() / np.sqrt(2000), rel=0.15)
    acc = float(np.mean(np.argmax(np.asarray(probs), -1) == np.asarray(labels)))
    assert se["accuracy"] == pytest.approx(np.sqrt(acc * (1 - acc) / 2000), rel=0.15)
    assert 0 < se["ece"] < 0.05 and 0 < se["brier"] < 0.05
