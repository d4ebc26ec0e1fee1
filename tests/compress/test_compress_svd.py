"""SVD truncation: Eckart-Young identities, rank selection, and activation-aware factorization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64

from sandbox.compress import svd
from sandbox.errors import SandboxError


@pytest.mark.parametrize("m,n", [(7, 4), (5, 9)])
def test_eckart_young_errors_are_exact(m, n):
    with enable_x64():
        w = jax.random.normal(jax.random.PRNGKey(m * n), (m, n), jnp.float64)
        s = jnp.linalg.svd(w, compute_uv=False)
        for rank in range(1, min(m, n) + 1):
            f = svd.svd_factors(w, rank)
            err = svd.eckart_young_errors(s, rank)
            d = w - f["u"] @ f["v"]
            np.testing.assert_allclose(jnp.linalg.norm(d), err["fro"], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(jnp.linalg.norm(d, ord=2), err["spectral"], rtol=1e-10, atol=1e-12)
            assert f["u"].shape == (m, rank) and f["v"].shape == (rank, n)


def test_truncation_beats_random_rank_k_matrices():
    """No other rank-k matrix is closer: compare against perturbed factors."""
    with enable_x64():
        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        w = jax.random.normal(k1, (20, 15), jnp.float64)
        f = svd.svd_factors(w, 4)
        best = jnp.linalg.norm(w - f["u"] @ f["v"])
        for key in jax.random.split(k2, 3):
            ka, kb = jax.random.split(key)
            u = f["u"] + 0.1 * jax.random.normal(ka, f["u"].shape, jnp.float64)
            v = f["v"] + 0.1 * jax.random.normal(kb, f["v"].shape, jnp.float64)
            assert jnp.linalg.norm(w - u @ v) > best


def test_whitened_svd_output_error_is_exact_and_beats_plain_svd():
    """SVD-LLM: ||X(W - W')||_F equals the dropped singular values of L^T W and is optimal."""
    with enable_x64():
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
        # correlated, anisotropic inputs: a few directions carry most of the activation energy
        mix = jax.random.normal(k2, (24, 24), jnp.float64) * jnp.logspace(0, -2, 24)
        x = jax.random.normal(k1, (400, 24), jnp.float64) @ mix
        w = jax.random.normal(k3, (24, 16), jnp.float64)
        g = svd.gram(x, damp=0.0)
        l = jnp.linalg.cholesky(g)
        s_white = jnp.linalg.svd(l.T @ w, compute_uv=False)
        for rank in (3, 8):
            white = svd.whitened_factors(w, g, rank)
            plain = svd.svd_factors(w, rank)
            asvd = svd.asvd_factors(w, svd.asvd_scale(x), rank)
            abs_err = jnp.linalg.norm(x @ w - x @ white["u"] @ white["v"])
            np.testing.assert_allclose(abs_err, svd.eckart_young_errors(s_white, rank)["fro"], rtol=1e-8)
            e_white, e_plain, e_asvd = (svd.output_error(x, w, f) for f in (white, plain, asvd))
            assert e_white < e_asvd < e_plain


def test_energy_and_fraction_rank_selection():
    s = np.array([4.0, 2.0, 1.0, 1.0])  # energies 16, 4, 1, 1 of 22
    assert svd.rank_for_energy(s, 16 / 22) == 1
    assert svd.rank_for_energy(s, 0.8) == 2
    assert svd.rank_for_energy(s, 1.0) == 4
    assert svd.rank_for_fraction((100, 100), 0.5) == 25  # 25 * 200 = half of 100 * 100


def test_global_budget_prefers_energy_per_parameter():
    spectra = {"a": np.array([10.0, 9.0, 8.0, 7.0]), "b": np.array([10.0, 1.0, 0.5, 0.1])}
    shapes = {"a": (4, 12), "b": (4, 12)}  # a rank-1 term costs 16 of the 96 dense parameters
    ranks = svd.ranks_for_budget(spectra, shapes, fraction=5 * 16 / 96)  # room for 5 terms
    assert ranks == {"a": 4, "b": 1}


@pytest.mark.parametrize("rank", [0, 6, -1, 2.5])
def test_bad_rank_is_a_clear_error(rank):
    with pytest.raises(SandboxError, match="choose 1..5"):
        svd.svd_factors(jnp.ones((5, 8)), rank)
