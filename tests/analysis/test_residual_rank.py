"""analysis.residual_rank: the distance to rank one against its definition, and the captured streams
against the model's own forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.analysis import residual_rank
from sandbox.nn import ModelConfig, transformer


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def test_rank1_residual_is_the_relative_distance_to_the_best_rank_one_matrix(x64):
    x_LxD = jax.random.normal(jax.random.key(0), (12, 7), jnp.float64)
    u, s, vt = np.linalg.svd(np.asarray(x_LxD))
    best = s[0] * np.outer(u[:, 0], vt[0])  # Eckart-Young: the best rank-1 approximation
    expected = np.linalg.norm(np.asarray(x_LxD) - best) / np.linalg.norm(np.asarray(x_LxD))
    assert float(residual_rank.rank1_residual(x_LxD)) == pytest.approx(expected, rel=1e-12)
    one = jnp.outer(jnp.arange(1.0, 6.0), jnp.array([2.0, -1.0, 0.5]))
    assert float(residual_rank.rank1_residual(one)) < 1e-7
    assert float(residual_rank.effective_rank(one)) == pytest.approx(1.0, abs=1e-6)
    assert float(residual_rank.effective_rank(jnp.eye(5))) == pytest.approx(5.0, rel=1e-12)  # equal energy
    rows = jnp.tile(jnp.array([[1.0, 2.0, 3.0]]), (4, 1))
    assert float(residual_rank.uniformity_residual(rows)) == 0.0


def test_streams_end_where_the_forward_pass_unembeds():
    cfg = ModelConfig(vocab_size=50, seq_len=16, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=64,
                      pos_encoding="rope", norm="rmsnorm", mlp="swiglu")
    params = transformer.init(jax.random.key(1), cfg)
    tokens_BxL = jax.random.randint(jax.random.key(2), (2, 16), 0, 50)
    x_NxBxLxD = residual_rank.streams(params, tokens_BxL, cfg)
    assert x_NxBxLxD.shape == (4, 2, 16, 32)
    np.testing.assert_allclose(x_NxBxLxD[0], transformer.embed(params, tokens_BxL, cfg))
    np.testing.assert_allclose(transformer.unembed(params, x_NxBxLxD[-1], cfg),
                               transformer.apply(params, tokens_BxL, cfg), rtol=1e-5, atol=1e-5)
    out = residual_rank.per_layer(params, tokens_BxL, cfg)
    assert len(out["rank1_residual"]["mean"]) == 4
    assert all(0 < r < 1 for r in out["rank1_residual"]["mean"])
