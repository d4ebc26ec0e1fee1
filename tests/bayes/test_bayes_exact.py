"""sandbox.bayes against dense float64 mathematics on a tiny MLP (no peer library needed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import bayes
from sandbox.nn import plain_mlp


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def model_fn(p, x):
    return plain_mlp.apply(p, x, "tanh")


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        params = plain_mlp.init(jax.random.key(0), [2, 4, 3], jnp.float64)
        x = jax.random.normal(jax.random.key(1), (30, 2), jnp.float64)
        y = jax.random.randint(jax.random.key(2), (30,), 0, 3)
        return params, x, y


def dense_ggn(params, x, y, likelihood="classification", sigma=1.0):
    """sum_n J_n^T Lambda_n J_n from explicit per-example Jacobians."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    jac_NxCxP = jax.vmap(lambda xn: jax.jacobian(lambda w: model_fn(unravel(w), xn[None])[0])(flat))(x)
    if likelihood == "regression":
        c = jac_NxCxP.shape[1]
        lam_NxCxC = jnp.broadcast_to(jnp.eye(c) / sigma ** 2, (x.shape[0], c, c))
    else:
        p = jax.nn.softmax(model_fn(params, x))
        lam_NxCxC = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
    return jnp.einsum("ncp,nck,nkq->pq", jac_NxCxP, lam_NxCxC, jac_NxCxP), jac_NxCxP


def test_full_is_dense_ggn_plus_prior(problem):
    params, x, y = problem
    ggn, _ = dense_ggn(params, x, y)
    post = bayes.laplace(model_fn, params, (x, y), structure="full", prior_precision=0.7)
    np.testing.assert_allclose(post.precision(), ggn + 0.7 * jnp.eye(ggn.shape[0]), rtol=1e-10, atol=1e-12)
    diag = bayes.laplace(model_fn, params, (x, y), structure="diag", prior_precision=0.7)
    np.testing.assert_allclose(diag.precision(), jnp.diag(jnp.diag(ggn) + 0.7), rtol=1e-10, atol=1e-12)
    # the evidence by its definition, with a dense log-determinant
    theta = jax.flatten_util.ravel_pytree(params)[0]
    nll = -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(model_fn(params, x)), y[:, None], 1))
    p_mat = ggn + 0.7 * jnp.eye(ggn.shape[0])
    d = ggn.shape[0]
    lml = -nll - 0.5 * 0.7 * theta @ theta + 0.5 * d * jnp.log(0.7) - 0.5 * jnp.linalg.slogdet(p_mat)[1]
    np.testing.assert_allclose(post.log_marginal_likelihood(), lml, rtol=1e-12)


def test_kron_is_exact_for_one_example_and_lowrank_full_rank(problem):
    params, x, y = problem
    one = (x[:1], y[:1])  # one example: (a a^T) (x) Lambda is the exact GGN block of each layer
    full = bayes.laplace(model_fn, params, one, structure="full", prior_precision=0.5)
    kron = bayes.laplace(model_fn, params, one, structure="kron", prior_precision=0.5)
    mask = np.zeros_like(full.precision())
    for start, stop in [(0, 4), (4, 12), (12, 15), (15, 27)]:  # per leaf: layer_0/b, /w, layer_1/b, /w
        mask[start:stop, start:stop] = 1
    np.testing.assert_allclose(kron.precision(), full.precision() * mask, rtol=1e-10, atol=1e-12)
    low = bayes.laplace(model_fn, params, (x, y), structure="lowrank", rank=27, key=jax.random.key(3))
    ref = bayes.laplace(model_fn, params, (x, y), structure="full")
    np.testing.assert_allclose(low.log_marginal_likelihood(), ref.log_marginal_likelihood(), rtol=1e-8)
    np.testing.assert_allclose(low.predictive(x[:5]), ref.predictive(x[:5]), rtol=1e-7)


def test_slq_logdet_within_its_error_bars(problem):
    params, x, y = problem
    op = bayes.curvature_operator(model_fn, params, (x, y))
    precision = bayes.shifted(op, jnp.full(op.dim, 0.3))
    eigs = jnp.linalg.eigvalsh(bayes.laplace(model_fn, params, (x, y), prior_precision=0.3).precision())
    exact = jnp.sum(jnp.log(eigs))
    est, err = bayes.slq_logdet(precision, key=jax.random.key(4), num_steps=15, num_probes=32)
    assert 0 < err < 0.1 * jnp.sum(jnp.abs(jnp.log(eigs)))  # the bars are informative
    assert abs(est - exact) <= 4 * err, (est, exact, err)


def test_mc_predictive_converges_to_glm_regression():
    params = plain_mlp.init(jax.random.key(5), [2, 6, 2], jnp.float64)
    x = jax.random.normal(jax.random.key(6), (40, 2), jnp.float64)
    y = jnp.sin(x)
    post = bayes.laplace(model_fn, params, (x, y), likelihood="regression", sigma_noise=0.3, prior_precision=2.0)
    ggn, jac_NxCxP = dense_ggn(params, x[:6], y[:6], "regression", 0.3)
    mean, var = post.predictive(x[:6], method="glm")
    sigma = jnp.linalg.inv(post.precision())
    exact_var = jnp.einsum("ncp,pq,ncq->nc", jac_NxCxP, sigma, jac_NxCxP) + 0.09
    np.testing.assert_allclose(var, exact_var, rtol=1e-10)
    errors = []
    for n in (100, 10000):
        m_mc, v_mc = post.predictive(x[:6], method="mc", key=jax.random.key(7), num_samples=n)
        errors.append(float(jnp.max(jnp.abs(v_mc - var) / var)))
        np.testing.assert_allclose(m_mc, mean, atol=4 * float(jnp.sqrt(jnp.max(var - 0.09) / n)) + 1e-12)
    assert errors[1] < 0.05 and errors[1] < errors[0]


def test_optimized_prior_maximizes_the_evidence(problem):
    params, x, y = problem
    post = bayes.laplace(model_fn, params, (x, y), structure="kron")
    best = post.optimize_prior_precision(steps=300)
    grid = jnp.exp(jnp.linspace(-4, 4, 161))
    curve = bayes.evidence_curve(post, grid)
    assert float(best.log_marginal_likelihood()) >= float(jnp.max(curve)) - 1e-6
    grad = jax.grad(lambda d: bayes.log_marginal_likelihood(post, d))(best.prior_precision)
    assert abs(float(grad)) < 1e-3


def test_head_posterior_closed_forms_match_the_generic_path():
    k1, k2, k3 = jax.random.split(jax.random.key(8), 3)
    phi = jax.random.normal(k1, (25, 3), jnp.float64)
    w = jax.random.normal(k2, (3, 4), jnp.float64)
    y = jax.random.randint(k3, (25,), 0, 4)
    generic = bayes.laplace(lambda p, x: x @ p["w"], {"w": w}, (phi, y), structure="diag", prior_precision=0.4)
    for structure in ("diag", "kron"):
        head = bayes.laplace_head(phi, y, w, structure=structure, prior_precision=0.4)
        # the closed-form variance diag(J Sigma J^T) equals the per-example Jacobian path
        np.testing.assert_allclose(bayes.head_predictive(head, phi[:6])[0], head.predictive(phi[:6]), rtol=1e-10)
        if structure == "diag":
            np.testing.assert_allclose(head.precision(), generic.precision(), rtol=1e-10)
            np.testing.assert_allclose(head.log_marginal_likelihood(), generic.log_marginal_likelihood(), rtol=1e-12)
        else:
            p = jax.nn.softmax(phi @ w)
            lam = jnp.diag(p.sum(0)) - p.T @ p
            np.testing.assert_allclose(head.precision(), jnp.kron(phi.T @ phi / 25, lam) + 0.4 * jnp.eye(12),
                                       rtol=1e-10, atol=1e-12)


def test_kron_predictive_and_mixed_diag_equal_dense_computations(problem):
    params, x, y = problem
    # kron, diag: the per-layer closed form of J Sigma J^T (no Jacobian) equals the dense one, all layers and a subset
    for structure, subset in (("kron", None), ("kron", ["layer_1"]), ("diag", None)):
        post = bayes.laplace(model_fn, params, (x, y), structure=structure, subset=subset, prior_precision=0.3)
        jac_NxCxP = jax.vmap(lambda xn, sub=post.subset: jax.jacobian(
            lambda t: model_fn(sub.merge(params, t), xn[None])[0])(sub.theta(params)))(x[:7])
        exact = jnp.einsum("ncp,pq,ndq->ncd", jac_NxCxP, jnp.linalg.inv(post.precision()), jac_NxCxP)
        np.testing.assert_allclose(bayes.glm_moments(post, x[:7])[1], exact, rtol=1e-9, atol=1e-13)
    # diag on a model with a leaf outside any dense layer (an output scale): still the exact GGN diagonal
    scaled = dict(params, scale=jnp.asarray(1.3))

    def scaled_fn(p, xb):
        return p["scale"] * model_fn({k: v for k, v in p.items() if k != "scale"}, xb)

    flat, unravel = jax.flatten_util.ravel_pytree(scaled)
    jac = jax.vmap(lambda xn: jax.jacobian(lambda w: scaled_fn(unravel(w), xn[None])[0])(flat))(x)
    p = jax.nn.softmax(scaled_fn(scaled, x))
    lam = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
    ggn_diag = jnp.einsum("ncp,nck,nkp->p", jac, lam, jac)
    post = bayes.laplace(scaled_fn, scaled, (x, y), structure="diag", prior_precision=0.7)
    np.testing.assert_allclose(jnp.diag(post.precision()), ggn_diag + 0.7, rtol=1e-10)
