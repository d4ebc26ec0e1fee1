"""Curvature toolkit on a small MLP (float64): every operator and estimator against the dense truth."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from sandbox import curvature
from sandbox.errors import SandboxError

N_IN, N_HID, N_OUT, N_EX = 5, 8, 4, 24  # 5*8+8+8*4+4 = 84 parameters


def mlp(params, batch):
    h = jnp.tanh(batch["x"] @ params["l1"]["w"] + params["l1"]["b"])
    return h @ params["l2"]["w"] + params["l2"]["b"]


def ce(logits, batch):
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, batch["y"][:, None], axis=1))


def loss(params, batch):
    return ce(mlp(params, batch), batch)


@pytest.fixture(scope="module")
def x64():
    with jax.enable_x64(True):
        yield


def dense_hessian(loss_fn, unravel, batch, flat):
    return jax.jit(jax.hessian(lambda w, b: loss_fn(unravel(w), b)))(flat, batch)


@pytest.fixture(scope="module")
def problem(x64):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    params = {"l1": {"w": jax.random.normal(k1, (N_IN, N_HID)), "b": 0.1 * jnp.ones(N_HID)},
              "l2": {"w": jax.random.normal(k2, (N_HID, N_OUT)), "b": jnp.zeros(N_OUT)}}
    batch = {"x": jax.random.normal(k3, (N_EX, N_IN)), "y": jax.random.randint(k4, (N_EX,), 0, N_OUT)}
    flat, unravel = ravel_pytree(params)
    h_NxN = dense_hessian(loss, unravel, batch, flat)
    return params, batch, flat, unravel, np.asarray(h_NxN)


def test_hessian_dense_and_matvec_equal_jax_hessian(problem):
    params, batch, flat, unravel, h = problem
    op = curvature.hessian(loss, params, batch)
    assert op.dim == flat.size and op.dtype == jnp.float64
    np.testing.assert_allclose(curvature.dense(op), h, atol=1e-12)
    v = jax.random.normal(jax.random.key(1), flat.shape)
    chex.assert_trees_all_close(op.matvec(unravel(v)), unravel(h @ v), atol=1e-12)
    np.testing.assert_allclose(op.matvec(v), h @ v, atol=1e-12)


def test_ggn_equals_analytic_and_is_psd(problem):
    params, batch, flat, unravel, _ = problem
    op = curvature.ggn(mlp, ce, params, batch)
    jac = jax.jit(jax.jacfwd(lambda w: mlp(unravel(w), batch)))(flat).reshape(-1, flat.size)
    z = mlp(params, batch)
    h_out = jax.jit(jax.hessian(lambda o: ce(o.reshape(z.shape), batch)))(z.ravel())
    g = np.asarray(curvature.dense(op))
    np.testing.assert_allclose(g, jac.T @ h_out @ jac, atol=1e-12)
    assert np.linalg.eigvalsh(g).min() > -1e-12


def test_empirical_fisher_is_mean_outer_product_of_example_grads(problem):
    params, batch, flat, unravel, _ = problem
    op = curvature.fisher(mlp, params, batch, output_loss_fn=ce, kind="empirical")
    per_example = jax.jit(jax.vmap(
        lambda x, y: jax.grad(lambda w: loss(unravel(w), {"x": x[None], "y": y[None]}))(flat)))
    g_ExN = per_example(batch["x"], batch["y"])
    np.testing.assert_allclose(curvature.dense(op), g_ExN.T @ g_ExN / N_EX, atol=1e-12)


def test_mc_fisher_converges_to_ggn_of_cross_entropy(problem):
    params, batch, *_ = problem
    mc = curvature.dense(curvature.fisher(mlp, params, batch, kind="mc", key=jax.random.key(3),
                                          num_samples=4000))
    g = curvature.dense(curvature.ggn(mlp, ce, params, batch))
    assert np.linalg.norm(mc - g) / np.linalg.norm(g) < 0.05


def test_lanczos_top_and_bottom_match_eigh(problem):
    params, batch, flat, _, h = problem
    op = curvature.hessian(loss, params, batch)
    exact = np.linalg.eigvalsh(h)
    vals, vecs = curvature.top_eigenpairs(op, k=5, key=jax.random.key(0), num_steps=op.dim)
    np.testing.assert_allclose(vals, exact[::-1][:5], rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(vecs * (vecs @ h), axis=1)), np.abs(vals), rtol=1e-8)
    low, _ = curvature.bottom_eigenpairs(op, k=3, key=jax.random.key(0), num_steps=op.dim)
    np.testing.assert_allclose(low, exact[:3], rtol=1e-8)


def test_lanczos_residual_norms_are_the_true_residuals(problem):
    params, batch, _, _, h = problem
    op = curvature.hessian(loss, params, batch)
    out = curvature.eigenpairs(op, 3, key=jax.random.key(2), num_steps=12)
    true = [np.linalg.norm(h @ y - lam * y) for lam, y in zip(out.values_K, out.vectors_KxN)]
    np.testing.assert_allclose(out.residuals_K, true, rtol=1e-6)
    assert max(true) > 1e-6  # a short run really has residuals to report


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_lanczos_full_run_is_exact_on_random_symmetric_matrices(seed):
    with jax.enable_x64(True):
        a = np.random.default_rng(seed).standard_normal((30, 30))
        a = a + a.T
        vals, _ = curvature.top_eigenpairs(curvature.from_dense(a), k=4, key=jax.random.key(seed),
                                           num_steps=30)
        np.testing.assert_allclose(vals, np.linalg.eigvalsh(a)[::-1][:4], rtol=1e-8, atol=1e-10)


def test_lanczos_restarts_after_breakdown_and_stays_exact(x64):
    """Three distinct eigenvalues, each 8 times: the Krylov space of any start is at most 3-dimensional,
    so Lanczos breaks down (beta ~ 0) and goes on in a new direction; from an eigenvector (e_0 of a
    diagonal A) beta is exactly 0 at once and the restart direction takes over. Either way a full run of
    N steps is A in an orthonormal basis: T has A's eigenvalues, multiplicities included."""
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((24, 24)))
    spectrum = np.repeat([5.0, 2.0, -1.0], 8)
    for a, v0, exact_zeros in ((q @ np.diag(spectrum) @ q.T, jnp.ones(24), 0), (np.diag(spectrum), jnp.eye(24)[0], 1)):
        tri = curvature.lanczos(curvature.from_dense(a), v0, 24)
        betas = np.asarray(tri.betas_M[:-1])
        assert np.sum(betas < 1e-10) >= 2 and np.sum(betas == 0) >= exact_zeros  # broke down, went on
        np.testing.assert_allclose(tri.basis_MxN @ tri.basis_MxN.T, np.eye(24), atol=1e-12)
        np.testing.assert_allclose(curvature.tridiagonal_eigh(tri)[0], np.sort(spectrum), atol=1e-10)


def test_power_iteration_with_deflation_finds_largest_magnitudes(x64):
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((20, 20)))
    spectrum = np.array([10.0, -6.0, 3.0] + [0.5] * 17)
    op = curvature.from_dense(q @ np.diag(spectrum) @ q.T)
    vals, vecs = curvature.power_iteration(op, k=3, key=jax.random.key(0), num_steps=200)
    np.testing.assert_allclose(vals, [10.0, -6.0, 3.0], rtol=1e-8)
    np.testing.assert_allclose(np.abs(vecs @ q[:, :3]), np.eye(3), atol=1e-6)


def test_slq_density_integrates_to_one_and_matches_first_two_moments(problem):
    params, batch, _, _, h = problem
    op = curvature.hessian(loss, params, batch)
    n, probes = op.dim, 16
    nodes, weights = curvature.slq_nodes_weights(op, key=jax.random.key(4), num_steps=30,
                                                 num_probes=probes)
    np.testing.assert_allclose(np.sum(weights, axis=1), 1.0, rtol=1e-10)
    for power, a in ((1, h), (2, h @ h)):
        moment = np.mean(np.sum(weights * nodes**power, axis=1))
        # v = z / sqrt(n), z Rademacher: Var(v^T A v) = 2 (||A||_F^2 - sum A_ii^2) / n^2
        std = np.sqrt(2 * (np.sum(a**2) - np.sum(np.diag(a) ** 2)) / probes) / n
        assert abs(moment - np.trace(a) / n) < 5 * std
    grid, density = curvature.spectral_density(op, key=jax.random.key(4), num_steps=30,
                                               num_probes=probes)
    assert np.all(density >= 0)
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, rtol=1e-4)


def test_hutchpp_is_exact_with_a_full_sketch_and_beats_hutchinson(x64):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    a = q @ np.diag(1.0 / np.arange(1, 61) ** 2) @ q.T  # fast-decaying spectrum
    op = curvature.from_dense(a)
    np.testing.assert_allclose(curvature.trace(op, key=jax.random.key(0), num_matvecs=180),
                               np.trace(a), rtol=1e-12)
    keys = jax.random.split(jax.random.key(1), 20)
    err = {m: np.mean([abs(curvature.trace(op, key=k, num_matvecs=30, method=m) - np.trace(a))
                       for k in keys]) for m in ("hutch++", "hutchinson")}
    assert err["hutch++"] < err["hutchinson"] / 3


def test_hutchinson_diagonal_is_unbiased_and_jits_on_a_closure_loss(problem):
    params, batch, _, _, h = problem

    @jax.jit
    def diag(params, key):  # as Sophia-H would: the loss closes over the batch
        op = curvature.hessian(lambda p, _: loss(p, batch), params, None)
        return curvature.diagonal(op, key=key, num_matvecs=2000)

    est = diag(params, jax.random.key(5))
    chex.assert_trees_all_equal_shapes(est, params)
    flat_est = ravel_pytree(est)[0]
    off = h - np.diag(np.diag(h))
    std = np.sqrt(np.sum(off**2, axis=1) / 2000)  # Var(z_i (Hz)_i) = sum_{j != i} H_ij^2
    assert np.all(np.abs(flat_est - np.diag(h)) < 5 * std + 1e-12)


def test_block_operator_is_the_block_of_the_dense_hessian(problem):
    params, batch, _, _, h = problem
    op = curvature.hessian(loss, params, batch)
    start = N_IN * N_HID + N_HID  # leaves flatten as l1/b, l1/w, l2/b, l2/w
    np.testing.assert_allclose(curvature.dense(op.block("l2")), h[start:, start:], atol=1e-12)
    w_start = N_HID  # l1/w comes after l1/b
    np.testing.assert_allclose(curvature.dense(op.block("l1/w")),
                               h[w_start:start, w_start:start], atol=1e-12)
    blk = op.block("l2")
    chex.assert_trees_all_equal_shapes(blk.unravel(jnp.zeros(blk.dim)), params["l2"])
    with pytest.raises(SandboxError, match="valid blocks: l1, l1/b, l1/w, l2"):
        op.block("l3")


def test_dataset_operator_is_the_mean_over_batches(problem):
    params, batch, flat, unravel, h = problem
    halves = [jax.tree_util.tree_map(lambda x: x[:12], batch),
              jax.tree_util.tree_map(lambda x: x[12:], batch)]
    # equal shapes (scanned): the mean of the halves' mean losses is the full batch's loss
    np.testing.assert_allclose(curvature.dense(curvature.hessian(loss, params, halves)), h,
                               atol=1e-12)
    ragged = [jax.tree_util.tree_map(lambda x: x[:7], batch),
              jax.tree_util.tree_map(lambda x: x[7:], batch)]
    mean_loss = lambda p, parts: (loss(p, parts[0]) + loss(p, parts[1])) / 2  # noqa: E731
    np.testing.assert_allclose(curvature.dense(curvature.hessian(loss, params, ragged)),
                               dense_hessian(mean_loss, unravel, ragged, flat), atol=1e-12)


def test_sharpness_and_preconditioned_sharpness_match_dense(problem):
    params, batch, flat, unravel, h = problem
    key = jax.random.key(6)
    sharp = jax.jit(lambda p: curvature.sharpness(loss, p, batch, key, num_steps=flat.size))(params)
    np.testing.assert_allclose(sharp, np.linalg.eigvalsh(h)[-1], rtol=1e-8)
    precond = jax.tree_util.tree_map(lambda x: jnp.abs(x) + 0.01, params)
    got = curvature.preconditioned_sharpness(loss, params, batch, key, precond, num_steps=flat.size)
    d = 1 / np.sqrt(ravel_pytree(precond)[0])
    np.testing.assert_allclose(got, np.linalg.eigvalsh(d[:, None] * h * d[None, :])[-1], rtol=1e-8)


def test_jacobian_products_and_singular_values(x64):
    w = jax.random.normal(jax.random.key(7), (6, 9))
    f = lambda x: jnp.tanh(x @ w)  # (3, 6) -> (3, 9)
    x = jax.random.normal(jax.random.key(8), (3, 6))
    jac = curvature.jacobian(f, x)
    j = np.asarray(jax.jit(jac.dense)())
    assert j.shape == (27, 18)
    u, o = jax.random.normal(jax.random.key(9), (3, 6)), jax.random.normal(jax.random.key(10), (3, 9))
    np.testing.assert_allclose(jax.jit(jac.jvp)(u).ravel(), j @ u.ravel(), atol=1e-12)
    np.testing.assert_allclose(jax.jit(jac.vjp)(o).ravel(), j.T @ o.ravel(), atol=1e-12)
    sv = curvature.singular_values(jac, k=4, key=jax.random.key(0), num_steps=18)
    np.testing.assert_allclose(sv, np.linalg.svd(j, compute_uv=False)[:4], rtol=1e-8)


def test_bad_inputs_raise_clear_errors(problem):
    params, batch, *_ = problem
    with pytest.raises(SandboxError, match="scalar"):
        curvature.hessian(lambda p, b: mlp(p, b), params, batch)
    op = curvature.hessian(loss, params, batch)
    with pytest.raises(SandboxError, match="k=1000"):
        curvature.top_eigenpairs(op, k=1000, key=jax.random.key(0))
    with pytest.raises(SandboxError, match="hutch\\+\\+, hutchinson"):
        curvature.trace(op, key=jax.random.key(0), method="exact")
    with pytest.raises(SandboxError, match="'empirical', 'mc'"):
        curvature.fisher(mlp, params, batch, kind="true")
    bad = jax.tree_util.tree_map(lambda x: x * jnp.nan, params)
    with pytest.raises(SandboxError, match="NaN"):
        curvature.top_eigenpairs(curvature.hessian(loss, bad, batch), k=3,
                                 key=jax.random.key(0), num_steps=12)
