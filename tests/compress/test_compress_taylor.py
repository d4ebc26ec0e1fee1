"""The predicted loss change g^T d + d^T H d / 2 against dense float64 curvature: exact on a quadratic loss,
relative error -> 0 with the change on a small transformer; Spearman against scipy's."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from sandbox.compress import taylor
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig
from sandbox.train import objective


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_a_quadratic_loss_is_predicted_exactly():
    """L(theta) = mean over batches of 1/2 theta^T A_b theta + c_b^T theta: the model is the loss itself."""
    rng = np.random.default_rng(0)
    a = [jnp.asarray((m := rng.normal(size=(9, 9))) @ m.T) for _ in range(3)]
    c = [jnp.asarray(rng.normal(size=9)) for _ in range(3)]
    batches = [{"a": ai, "c": ci} for ai, ci in zip(a, c)]
    flat = lambda p: jnp.concatenate([p["u"].ravel(), p["v"]])  # noqa: E731  the layout's leaf order: u, v
    loss = lambda p, b: 0.5 * flat(p) @ b["a"] @ flat(p) + b["c"] @ flat(p)  # noqa: E731
    params = {"u": jnp.asarray(rng.normal(size=(2, 3))), "v": jnp.asarray(rng.normal(size=3))}
    moved = jax.tree.map(lambda x: x + jnp.asarray(rng.normal(size=x.shape)), params)
    model = taylor.expand(loss, params, batches)
    mean = lambda p: np.mean([float(loss(p, b)) for b in batches])  # noqa: E731
    out = model.predict(moved)
    assert out["predicted_delta_loss"] == pytest.approx(mean(moved) - mean(params), rel=1e-12)
    d, a_mean, c_mean = flat(moved) - flat(params), sum(a) / 3, sum(c) / 3
    g = a_mean @ flat(params) + c_mean
    assert out["predicted_delta_loss_diag"] == pytest.approx(float(g @ d + 0.5 * jnp.diag(a_mean) @ d**2), rel=1e-12)
    assert model.diagonal == "exact"


CFG = ModelConfig(vocab_size=11, seq_len=6, d_model=8, n_layers=1, n_heads=2, d_ff=16)


@pytest.mark.slow
def test_on_a_transformer_the_error_is_third_order():
    """The prediction equals g^T d + d^T H d / 2 with H from jax.hessian, and its relative error to the
    measured change falls like t^2 as the change t d shrinks (the Taylor remainder is O(t^3); measured:
    6e-2, 7e-4, 8e-6 at t = 0.1, 0.01, 0.001)."""
    params = transformer.init(jax.random.PRNGKey(0), CFG, jnp.float64)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 3, 7), 0, 11)
    batches = [{"inputs": t[:, :-1], "targets": t[:, 1:]} for t in tokens]
    loss = lambda p, b: objective.lm_loss(p, b, CFG)  # noqa: E731
    model = taylor.expand(loss, params, batches, diag_probes=1, key=jax.random.PRNGKey(3))  # diag: quadratic test
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    mean = lambda w: sum(loss(unravel(w), b) for b in batches) / len(batches)  # noqa: E731
    g, h = jax.grad(mean)(flat), jax.jit(jax.hessian(mean))(flat)
    direction = jax.random.normal(jax.random.PRNGKey(2), flat.shape, jnp.float64) * 0.05
    errors = []
    for t in (0.1, 0.01, 0.001):
        d = t * direction
        out = model.predict(unravel(flat + d))
        assert out["predicted_delta_loss"] == pytest.approx(float(g @ d + 0.5 * d @ h @ d), rel=1e-10)
        measured = float(mean(flat + d) - mean(flat))
        errors.append(abs(out["predicted_delta_loss"] - measured) / abs(measured))
    assert errors[2] < 1e-4 and errors[1] < errors[0] / 30 and errors[2] < errors[1] / 30


def test_hutchinson_diagonal_is_unbiased_with_many_probes():
    a = jnp.asarray(np.diag(np.arange(1.0, 6.0)) + 0.1)
    loss = lambda p, b: 0.5 * p @ a @ p  # noqa: E731
    model = taylor.expand(loss, jnp.zeros(5), [{"unused": jnp.zeros(1)}], diag_probes=4000, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(model.diag_N, np.diag(a), atol=0.02)
    assert "4000" in model.diagonal


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 6, 40).astype(float), rng.normal(size=40)
    assert taylor.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, rel=1e-12)


def test_agreement_judges_small_changes_only():
    rows = [{"delta_loss": m, "predicted_delta_loss": p, "predicted_delta_loss_diag": q}
            for m, p, q in [(0.001, 0.0011, 0.002), (0.004, 0.0038, 0.001), (0.5, 2.0, 0.1), (0.0, 1e-9, 0.0)]]
    out = taylor.agreement(rows, small=0.01)
    assert out["small_rows"] == 2  # a measured change of exactly 0 has no relative error
    assert out["small_median_rel_error"] == pytest.approx(np.median([0.1, 0.05]))
    assert out["small_median_rel_error_diag"] == pytest.approx(np.median([1.0, 0.75]))
    assert out["spearman"] == pytest.approx(1.0) and out["spearman_diag"] == pytest.approx(0.8)
