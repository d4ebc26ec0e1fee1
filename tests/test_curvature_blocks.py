"""Block spectra through masked operators: exact against the dense blocks, one compilation for all."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import curvature
from sandbox.curvature.trace import hutchpp_terms
from sandbox.errors import SandboxError

# leaves of 12, 25 and 3 coordinates: a block larger than the step count, one smaller than k; "a+c" (not
# contiguous) overlaps a and c, so the targets make three packs of disjoint masks: all | b, a+c | a, c
PARAMS = {"a": np.zeros(12), "b": np.zeros((5, 5)), "c": np.zeros(3)}
NAMES = ["all", "a", "b", "c", "a+c"]
SLICES = {"all": np.arange(40), "a": np.arange(12), "b": np.arange(12, 37), "c": np.arange(37, 40),
          "a+c": np.r_[0:12, 37:40]}


def problem_layout():
    return curvature.Layout.of(jax.tree_util.tree_map(jnp.asarray, PARAMS))


@pytest.fixture(scope="module")
def problem():
    """A symmetric 40 x 40 float64 operator with the parameter layout of PARAMS, and its block spectra."""
    with jax.enable_x64(True):
        x = np.random.default_rng(0).normal(size=(40, 40))
        a_NxN = (x + x.T) / 2
        layout = problem_layout()
        op = curvature.LinearOperator(curvature.from_dense(a_NxN).rule, jnp.asarray(a_NxN), layout)
        masks_TxN = curvature.blocks.masks(layout, NAMES[:-1])
        masks_TxN = np.concatenate([masks_TxN, masks_TxN[1:2] + masks_TxN[3:4]])
        # 15 vectors a step in batches of 4: the exact checks below also check the chunked, padded matvecs
        out = curvature.blocks.spectra(op, masks_TxN, key=jax.random.key(0), k=5, num_steps=30, num_probes=2,
                                       num_matvecs=120, batch_size=4)
    return a_NxN, masks_TxN, out, SLICES


def test_masks_cover_each_block_once(problem):
    _, masks_TxN, _, slices = problem
    for t, name in enumerate(NAMES[:-1]):
        expected = np.zeros(40)
        expected[slices[name]] = 1
        np.testing.assert_array_equal(masks_TxN[t], expected)


def test_masked_top_eigenvalues_are_the_dense_blocks(problem):
    a_NxN, _, out, slices = problem
    for t, name in enumerate(NAMES):
        exact = np.linalg.eigvalsh(a_NxN[np.ix_(slices[name], slices[name])])[::-1]
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
        lam, u = np.linalg.eigh(a_NxN[np.ix_(block, block)])
        for p in range(2):
            z = signs_PxN[p, block]
            expected = (u.T @ z) ** 2 / (z @ z)
            weights, nodes = out["weights_TxPxM"][t, p], out["nodes_TxPxM"][t, p]
            kept = weights > 1e-12
            assert kept.sum() == len(lam) and abs(weights.sum() - 1) < 1e-12
            np.testing.assert_allclose(nodes[kept], lam, atol=1e-10)
            np.testing.assert_allclose(weights[kept], expected, atol=1e-10)
            assert lam.min() - 1e-10 <= nodes.min() and nodes.max() <= lam.max() + 1e-10  # no sentinel outside


def test_block_hutchpp_traces_are_exact_when_the_sketch_covers_the_space(problem):
    a_NxN, _, out, slices = problem
    for t, name in enumerate(NAMES):  # 120 matvecs: 40 sketch vectors, Q Q^T = I, so tr(P_b A) exactly
        np.testing.assert_allclose(out["trace_T"][t], np.trace(a_NxN[np.ix_(slices[name], slices[name])]), atol=1e-9)


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
    expected = [(t, s) for t in range(len(NAMES)) for s in curvature.blocks.STAGES]
    assert sorted(ticks) == sorted(expected * 2)


def test_packs_hold_disjoint_targets_each_once(problem):
    _, masks_TxN, _, _ = problem
    order, sizes = curvature.blocks.packs(masks_TxN)
    assert sorted(order) == list(range(len(NAMES))) and sizes == (1, 2, 2)  # all | b, a+c | a, c
    ends = np.cumsum((0,) + sizes)
    for a, b in zip(ends[:-1], ends[1:]):
        assert masks_TxN[order[a:b]].sum(axis=0).max() == 1


def test_block_traces_split_one_hutchpp_without_bias():
    """With a sketch smaller than the space, each block's trace is Hutch++ of tr(P_b A) from the whole
    operator's matvecs (`hutchpp_terms`, summed over the block): the terms add up to the whole operator's
    Hutch++ (the number `curvature.trace` gives), and over many keys each block's mean is its exact
    trace (float64)."""
    with jax.enable_x64(True):
        x = np.random.default_rng(1).normal(size=(40, 40))
        a_NxN = x @ x.T / 40 + np.diag(np.linspace(0, 3, 40))
        op = curvature.LinearOperator(curvature.from_dense(a_NxN).rule, jnp.asarray(a_NxN), problem_layout())
        masks_TxN = curvature.blocks.masks(op.layout, NAMES[:-1])
        whole = curvature.trace(op, key=jax.random.key(3), num_matvecs=15)
        np.testing.assert_allclose(np.sum(hutchpp_terms(op, jax.random.key(3), 15)), whole, rtol=1e-12)
        terms = jax.jit(jax.vmap(lambda key: hutchpp_terms(op, key, 15)))
        traces_KxT = np.asarray(terms(jax.random.split(jax.random.key(4), 2000))) @ masks_TxN.T
    exact_T = np.array([np.trace(a_NxN[np.ix_(SLICES[n], SLICES[n])]) for n in NAMES[:-1]])
    stderr_T = traces_KxT.std(axis=0) / np.sqrt(len(traces_KxT))
    assert (stderr_T > 0).all() and (np.abs(traces_KxT.mean(axis=0) - exact_T) < 4 * stderr_T).all()


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
