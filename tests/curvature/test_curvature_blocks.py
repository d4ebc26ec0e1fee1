"""Block spectra through masked operators: exact against the dense blocks, one compilation for all."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import curvature
from sandbox.errors import SandboxError

# leaves of 12, 25 and 3 coordinates: a block larger than the step count, one smaller than k
PARAMS = {"a": np.zeros(12), "b": np.zeros((5, 5)), "c": np.zeros(3)}
NAMES = ["all", "a", "b", "c"]


@pytest.fixture(scope="module")
def problem():
    """A symmetric 40 x 40 float64 operator with the parameter layout of PARAMS, and its block spectra."""
    with jax.enable_x64(True):
        x = np.random.default_rng(0).normal(size=(40, 40))
        a_NxN = (x + x.T) / 2
        layout = curvature.Layout.of(jax.tree_util.tree_map(jnp.asarray, PARAMS))
        op = curvature.LinearOperator(curvature.from_dense(a_NxN).rule, jnp.asarray(a_NxN), layout)
        masks_TxN = curvature.blocks.masks(layout, NAMES)
        out = curvature.blocks.spectra(op, masks_TxN, key=jax.random.key(0), k=5, num_steps=30, num_probes=2,
                                       num_matvecs=120)
    slices = {"all": slice(0, 40), "a": slice(0, 12), "b": slice(12, 37), "c": slice(37, 40)}
    return a_NxN, masks_TxN, out, slices


def test_masks_cover_each_block_once(problem):
    _, masks_TxN, _, slices = problem
    for t, name in enumerate(NAMES):
        expected = np.zeros(40)
        expected[slices[name]] = 1
        np.testing.assert_array_equal(masks_TxN[t], expected)


def test_masked_top_eigenvalues_are_the_dense_blocks(problem):
    a_NxN, _, out, slices = problem
    for t, name in enumerate(NAMES):
        exact = np.linalg.eigvalsh(a_NxN[slices[name], slices[name]])[::-1]
        k = min(5, len(exact))
        # blocks of at most 30 coordinates are exhausted by Lanczos: exact; "all" (40) converges at the top
        tol = 1e-4 if name == "all" else 1e-10
        np.testing.assert_allclose(out["values_TxK"][t, :k], exact[:k], atol=tol * np.abs(exact).max())
    assert out["residuals_TxK"][1:].max() < 1e-8  # exhausted Krylov spaces: no residual


def test_masked_slq_nodes_and_weights_are_the_dense_blocks_quadrature(problem):
    """With steps >= n_b, SLQ is exact: nodes = the block's eigenvalues, weights = (u_j . z)^2 / |z|^2 for
    the probe z restricted to the block; the N - n_b zeros of the masked operator carry no weight."""
    a_NxN, _, out, slices = problem
    with jax.enable_x64(True):
        signs_PxN = np.asarray(jax.random.rademacher(jax.random.key(0), (2, 40), jnp.float64))
    for t, name in enumerate(NAMES[1:], start=1):
        block = slices[name]
        lam, u = np.linalg.eigh(a_NxN[block, block])
        for p in range(2):
            z = signs_PxN[p, block]
            expected = (u.T @ z) ** 2 / (z @ z)
            weights, nodes = out["weights_TxPxM"][t, p], out["nodes_TxPxM"][t, p]
            kept = weights > 1e-12
            assert kept.sum() == len(lam) and abs(weights.sum() - 1) < 1e-12
            np.testing.assert_allclose(nodes[kept], lam, atol=1e-10)
            np.testing.assert_allclose(weights[kept], expected, atol=1e-10)
            assert lam.min() - 1e-10 <= nodes.min() and nodes.max() <= lam.max() + 1e-10  # no sentinel outside


def test_masked_hutchpp_trace_is_exact_when_the_sketch_covers_the_block(problem):
    a_NxN, _, out, slices = problem
    for t, name in enumerate(NAMES[1:], start=1):  # 40 sketch vectors >= every block's size
        np.testing.assert_allclose(out["trace_T"][t], np.trace(a_NxN[slices[name], slices[name]]), atol=1e-9)


def test_dense_blocks_are_the_blocks(problem):
    a_NxN, masks_TxN, _, slices = problem
    with jax.enable_x64(True):
        op = curvature.from_dense(jnp.asarray(a_NxN))
        blocks = curvature.blocks.dense(op, masks_TxN[1:])
    for a_bb, name in zip(blocks, NAMES[1:]):
        np.testing.assert_allclose(a_bb, a_NxN[slices[name], slices[name]], atol=1e-14)


def test_analyse_takes_small_blocks_exactly_and_large_ones_by_lanczos():
    """Softmax regression, float64: "w" (4 x 5 = 20 coordinates) costs more than the 2 x 5 + 6 = 16
    matvecs of its Lanczos route, "b" (5) less, so "b" comes exactly from its dense block."""
    from sandbox.analysis import curvature as acurv

    with jax.enable_x64(True):
        k_w, k_x, k_y = jax.random.split(jax.random.key(0), 3)
        params = {"b": jnp.zeros(5), "w": jax.random.normal(k_w, (4, 5), jnp.float64)}
        batch = {"x": jax.random.normal(k_x, (30, 4), jnp.float64), "targets": jax.random.randint(k_y, (30,), 0, 5)}
        logits_fn = lambda p, b: b["x"] @ p["w"] + p["b"]  # noqa: E731
        opts = acurv.CurvatureOptions(top_k=2, num_steps=5, density=True, num_probes=2, trace=True, num_matvecs=6,
                                      blocks=True)
        ticks = []
        result = acurv.analyse(logits_fn, params, batch, opts, {"linear": ["b", "w"]}, lambda *a: ticks.append(a))
        h = curvature.dense(acurv.operator("hessian", logits_fn, params, batch, jax.random.key(0)))
    h_b = np.asarray(h)[:5, :5]  # "b" comes first among the flat leaves
    b, w = result["blocks"]["b"], result["blocks"]["w"]
    assert (b["method"], w["method"]) == ("dense", "lanczos")
    np.testing.assert_allclose(b["top_eigenvalues"], np.linalg.eigvalsh(h_b)[::-1][:2], atol=1e-12)
    assert b["residuals"] == [0.0, 0.0] and abs(b["trace"] - np.trace(h_b)) < 1e-12
    grid, values = np.asarray(b["density"]["grid"]), np.asarray(b["density"]["values"])
    assert abs(np.sum(values) * (grid[1] - grid[0]) - 1) < 1e-2  # the exact spectral measure, smoothed
    assert sorted(ticks) == sorted((name, stage) for name in ("all", "b", "w") for stage in curvature.blocks.STAGES)


def test_all_blocks_run_in_one_compiled_program(problem):
    a_NxN, masks_TxN, _, _ = problem
    compiled = []

    def listen(event, secs, fun_name="", **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    ticks = []
    try:
        op = curvature.from_dense(jnp.asarray(a_NxN, jnp.float32) + 1.0)
        kwargs = dict(key=jax.random.key(1), k=3, num_steps=8, num_probes=2, num_matvecs=9,
                      tick=lambda t, stage: ticks.append((t, stage)))
        curvature.blocks.spectra(op, masks_TxN, **kwargs)
        assert compiled.count("jit(_spectra)") == 1  # top-k, SLQ and trace of every block: one program
        n = len(compiled)
        curvature.blocks.spectra(op, masks_TxN[::-1].copy(), **kwargs)  # other blocks, same count: no compile
        assert len(compiled) == n
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    expected = [(t, s) for t in range(4) for s in curvature.blocks.STAGES]
    assert sorted(ticks) == sorted(expected * 2)


def test_bad_masks_and_requests_are_refused():
    op = curvature.from_dense(jnp.eye(4))
    with pytest.raises(SandboxError, match="do not fit"):
        curvature.blocks.spectra(op, np.ones((2, 3)), key=jax.random.key(0), k=1, num_steps=2)
    with pytest.raises(SandboxError, match="Hutch"):
        curvature.blocks.spectra(op, np.ones((1, 4)), key=jax.random.key(0), k=1, num_steps=2, num_matvecs=2)


def test_linearized_operator_is_the_same_map():
    """`linearized` splits H v into the pass at w (once) and the tangent pass: the same H v, in float64."""
    with jax.enable_x64(True):
        params = {"w": jax.random.normal(jax.random.key(0), (4, 3), jnp.float64)}
        x = jax.random.normal(jax.random.key(1), (6, 4), jnp.float64)
        op = curvature.hessian(lambda p, b: jnp.mean(jnp.tanh(b @ p["w"]) ** 3), params, x)
        v_N = jax.random.normal(jax.random.key(2), (12,), jnp.float64)
        linear_mv = jax.jit(lambda op, v: op.linearized().mv(v))
        np.testing.assert_allclose(linear_mv(op, v_N), curvature.dense(op) @ v_N, rtol=1e-12, atol=1e-14)
