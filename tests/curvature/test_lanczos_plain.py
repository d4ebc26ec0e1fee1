"""Plain Lanczos (no reorthogonalization) with Cullum-Willoughby: ghosts appear in T, and the filtered values
equal the dense eigenvalues (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import curvature
from sandbox.curvature import lanczos_plain


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _matrix(n=300, seed=0):
    """Q diag(lambda) Q^T: five outliers above a bulk on [0, 10] (a Hessian's shape)."""
    rng = np.random.default_rng(seed)
    lam = np.concatenate([[100.0, 80.0, 60.0, 50.0, 45.0], rng.uniform(0, 10, n - 5)])
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * lam) @ q.T, np.sort(lam)[::-1]


def test_ghosts_appear_and_cullum_willoughby_keeps_one_of_each(x64):
    a, lam = _matrix()
    op = curvature.from_dense(jnp.asarray(a))
    alphas, betas = lanczos_plain.tridiagonal(op, jax.random.normal(jax.random.key(1), (300,), jnp.float64), 120)
    t = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
    raw = np.linalg.eigvalsh(t)
    assert np.sum(np.abs(raw - lam[0]) < 1e-8 * lam[0]) >= 2  # lambda_1 converged more than once: a ghost
    values, residuals = lanczos_plain.cullum_willoughby(alphas, betas, lanczos_plain.rel_tol(jnp.float64))
    np.testing.assert_allclose(values[:5], lam[:5], rtol=1e-10)
    assert np.all(residuals[:5] < 1e-6 * lam[0])
    assert len(values) < len(raw)  # copies merged and spurious values dropped


def test_top_eigenvalues_agree_with_full_reorthogonalization(x64):
    a, lam = _matrix(seed=3)
    op = curvature.from_dense(jnp.asarray(a))
    plain, _ = lanczos_plain.top_eigenvalues(op, 5, key=jax.random.key(2), num_steps=80)
    full, _ = curvature.top_eigenpairs(op, 5, key=jax.random.key(2), num_steps=80)
    np.testing.assert_allclose(plain, np.asarray(full), rtol=1e-9)
    np.testing.assert_allclose(plain, lam[:5], rtol=1e-9)


def test_slq_weights_are_a_probability_per_probe(x64):
    a, _ = _matrix(n=120)
    nodes, weights = lanczos_plain.slq_nodes_weights(curvature.from_dense(jnp.asarray(a)), key=jax.random.key(4),
                                                     num_steps=40, num_probes=3)
    assert nodes.shape == weights.shape == (3, 40)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-10)
    # the quadrature's first moment is the Rademacher quadratic form z^T A z / N: mean ~ tr(A) / N
    assert abs((nodes * weights).sum(1).mean() - np.trace(a) / 120) < 0.15 * np.trace(a) / 120


def test_the_plain_route_of_a_run_agrees_with_the_basis_route(tiny_run):
    from sandbox import analysis

    run = analysis.load(tiny_run[0])
    opts = dict(top_k=2, num_steps=30, density=True, num_probes=1, trace=True, num_matvecs=9)
    basis = analysis.curvature.of_run(run, analysis.CurvatureOptions(**opts))
    plain = analysis.curvature.of_run(run, analysis.CurvatureOptions(**opts, plain=True))
    assert plain["method"] == "lanczos-plain" and "method" not in basis
    np.testing.assert_allclose(plain["top_eigenvalues"][0], basis["top_eigenvalues"][0], rtol=1e-4)
    assert plain["trace_method"] == "hutchinson" and np.isfinite(plain["trace"])
    assert len(plain["density"]["grid"]) == len(basis["density"]["grid"])


def test_float32_runs_find_the_top_values_to_float32_accuracy():
    a, lam = _matrix(seed=5)
    op = curvature.from_dense(jnp.asarray(a, jnp.float32))
    values, residuals = lanczos_plain.top_eigenvalues(op, 5, key=jax.random.key(6), num_steps=60)
    assert len(values) == 5
    np.testing.assert_allclose(values, lam[:5], rtol=1e-4)
