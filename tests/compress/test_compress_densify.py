"""Scoring compressed models fast without changing the score: rank-padded thin factors, sort-once pruning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.compress import methods, prune, sweep
from sandbox.compress import model as cmodel
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig

CFG = ModelConfig(vocab_size=32, seq_len=8, d_model=16, n_layers=2, n_heads=2, d_ff=48)


def test_padded_factors_give_the_dense_truncated_svd_product_in_float64():
    rng = np.random.default_rng(0)
    w_MxN, x_TxM = rng.normal(size=(24, 40)), rng.normal(size=(7, 24))
    a, s, vt = np.linalg.svd(w_MxN, full_matrices=False)
    w5 = (a[:, :5] * s[:5]) @ vt[:5]  # Eckart-Young truncation at rank 5
    f = cmodel.pad_rank(a[:, :5] * np.sqrt(s[:5]), np.sqrt(s[:5])[:, None] * vt[:5], 16)
    assert f["u"].shape == (24, 16) and f["v"].shape == (16, 40)
    assert not f["u"][:, 5:].any() and not f["v"][5:].any()
    np.testing.assert_allclose(f["u"] @ f["v"], w5, rtol=0, atol=1e-12)
    np.testing.assert_allclose((x_TxM @ f["u"]) @ f["v"], x_TxM @ w5, rtol=0, atol=1e-12)


def test_thin_padded_model_equals_the_densified_model_in_float64():
    """densify(rank_multiple=8) keeps factors thin where k' (M + N) < M N and multiplies out the rest; the
    logits equal those of the all-dense model."""
    with jax.enable_x64(True):
        params = transformer.init(jax.random.PRNGKey(0), CFG, jnp.float64)
        tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 8), 0, 32)
        decs = methods.get("svd").prepare(cmodel.linear_layers(params), None)
        small, _ = sweep.compress(params, "svd", {"rank": 3}, decs)
        small = jax.tree.map(lambda p: np.asarray(p, np.float64), small)  # decompose's factors are float32
        thin, dense = cmodel.densify(small, rank_multiple=8), cmodel.densify(small)
        layers = cmodel.linear_layers(thin)
        # 16x16 (attention): 8 * 32 = 256 is not < 256, dense; 16x48 / 48x16 (MLP): 8 * 64 < 768, thin at rank 8
        assert {k for k, p in layers.items() if "u" in p} == {f"block_{i}/mlp/{n}" for i in range(2)
                                                              for n in ("up", "down")}
        assert all(p["u"].shape[1] == 8 for p in layers.values() if "u" in p)
        assert all("w" in p for p in cmodel.linear_layers(dense).values())
        np.testing.assert_allclose(transformer.apply(thin, tokens, CFG), transformer.apply(dense, tokens, CFG),
                                   rtol=1e-12, atol=1e-12)


def test_rows_are_the_same_with_thin_factors():
    params = transformer.init(jax.random.PRNGKey(0), CFG)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 8), 0, 32)
    evaluate = lambda p: {"loss": float(jnp.mean(transformer.apply(p, tokens, CFG) ** 2))}
    settings = [{"fraction": f} for f in (0.2, 0.6)]
    dense = sweep.run(params, "svd", settings, evaluate)
    thin = sweep.run(params, "svd", settings, evaluate, rank_multiple=4)
    for a, b in zip(dense, thin):
        assert a["kept_fraction"] == b["kept_fraction"] and a["ranks"] == b["ranks"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_sort_once_pruning_equals_sorting_per_sparsity_and_breaks_ties_by_position():
    w = np.array([[0.5, -0.1, 0.1], [0.3, -0.5, 0.1]], np.float32)  # ties in |w|: 0.1 x3, 0.5 x2
    ranks = prune.magnitude_ranks(w)
    np.testing.assert_array_equal(ranks, [[4, 0, 1], [3, 5, 2]])  # equal |w|: the earlier position ranks lower
    for sparsity in (0.0, 0.3, 0.5, 0.9):
        once, fresh = prune.magnitude_prune(w, sparsity, ranks), prune.magnitude_prune(w, sparsity)
        np.testing.assert_array_equal(once["mask"], fresh["mask"])
        np.testing.assert_array_equal(once["w"], np.where(ranks >= round(sparsity * 6), w, 0))
