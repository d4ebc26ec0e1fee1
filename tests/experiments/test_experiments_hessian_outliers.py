"""Hessian outliers, quick variant (C = 4 and 6 clusters, 2 seeds): C - 1 or C eigenvalues above the
within-class bulk edge, carried by the GGN, at every seed; and the class-mean split of the GGN is exact."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from jaxpr_calls import batched_eigh_shapes
from sandbox.experiments import registry


@pytest.mark.slow
def test_outliers_track_the_number_of_classes_at_every_seed(tmp_path):
    summary = registry.run("hessian_outliers", tmp_path, quick=True, progress=False)
    assert summary["seeds"] == [0, 1]
    for seed in summary["per_seed"]:
        rows = {r["num_classes"]: r for r in seed["details"]["per_C"]}
        assert sorted(rows) == [4, 6]
        for c, r in rows.items():
            assert c - 1 <= r["outliers_hessian"] <= c, r  # C - 1 or C outliers (Papyan; Sagun et al.)
            assert c - 1 <= r["outliers_ggn"] <= c, r
            top, k = r["top_hessian"], r["outliers_hessian"]
            assert top[k - 1] > r["bulk_edge"] >= top[k]  # the edge separates the outliers from the rest
            assert r["top_class_means"][0] > r["bulk_edge"]  # the class means reach above the bulk
            assert r["ggn_max_relative_error_on_outliers"] < 0.15  # the GGN carries the outliers ...
            assert r["outlier_subspace_overlap"] > 0.9  # ... in the same directions
            assert r["train_accuracy"] > 0.9
        assert rows[6]["outliers_hessian"] > rows[4]["outliers_hessian"]  # more classes, more outliers
        assert seed["verdict"] == "pass"
    assert summary["aggregate"]["C=6: outliers_hessian"]["min"] >= 5
    assert summary["verdict"] == "pass"
    for name in ("density.png", "spectra.png", "counts.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0


def test_class_means_split_the_ggn_exactly_into_between_and_within_parts():
    """Float64, dense: D^T D = sum_c pi_c sum_c' delta_cc' delta_cc'^T from per-sample vectors, and
    G - D^T D is the within-class covariance sum_c pi_c mean_i (g_ic' - delta_cc')(...)^T, hence PSD."""
    from sandbox.experiments.hessian_outliers import _MinusLowRank, class_means

    from sandbox import curvature, losses
    from sandbox.nn import plain_mlp

    with jax.enable_x64():
        c, n_per = 3, 4
        labels_N = jnp.repeat(jnp.arange(c), n_per)
        x_NxD = jax.random.normal(jax.random.PRNGKey(0), (c * n_per, 3), jnp.float64) + jnp.eye(c, 3)[labels_N]
        params = plain_mlp.init(jax.random.PRNGKey(1), [3, 5, c], jnp.float64)
        model_fn = lambda p, b: plain_mlp.apply(p, b[0], "tanh")  # noqa: E731
        output_loss = lambda z, b: losses.mean_cross_entropy(z, b[1])  # noqa: E731
        batch = (x_NxD, labels_N)
        gn = curvature.ggn(model_fn, output_loss, params, batch)
        d_QxP = class_means(model_fn, params, batch, c, gn.layout)
        g_PxP = np.asarray(curvature.dense(gn))
        # per-sample vectors g_ic' = sqrt(p_ic') J_i^T (e_c' - p_i), by explicit Jacobians
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        jac_NxCxP = jax.vmap(lambda x: jax.jacrev(lambda f: model_fn(unravel(f), (x[None],))[0])(flat))(x_NxD)
        p_NxC = jax.nn.softmax(model_fn(params, batch))
        g_NxCxP = np.sqrt(p_NxC)[:, :, None] * np.einsum("nkc,ncp->nkp", np.eye(c)[None] - p_NxC[:, None], jac_NxCxP)
        assert np.einsum("nkp,nkq->pq", g_NxCxP, g_NxCxP) / len(labels_N) == pytest.approx(g_PxP, abs=1e-12)
        y = np.asarray(labels_N)
        delta_CxCxP = np.stack([g_NxCxP[y == k].mean(0) for k in range(c)])
        between = sum((y == k).mean() * delta_CxCxP[k].T @ delta_CxCxP[k] for k in range(c))
        assert np.asarray(d_QxP.T @ d_QxP) == pytest.approx(between, abs=1e-12)
        within = sum((y == k).mean() * np.einsum("nkp,nkq->pq", g_NxCxP[y == k] - delta_CxCxP[k],
                                                 g_NxCxP[y == k] - delta_CxCxP[k]) / (y == k).sum() for k in range(c))
        op = curvature.LinearOperator(_MinusLowRank(gn.rule), (gn.operands, d_QxP), gn.layout)
        assert np.asarray(curvature.dense(op)) == pytest.approx(within, abs=1e-12)
        assert np.linalg.eigvalsh(within).min() > -1e-12


def test_count_above_counts_the_eigenvalues_over_the_edge():
    from sandbox.experiments.hessian_outliers import count_above

    assert count_above([10.0, 9.0, 3.0, 1.2, 1.0], 2.0) == 3
    assert count_above([1.0, 0.9], 2.0) == 0


def test_no_batched_lapack_call_even_vmapped_over_seeds():
    """jaxlib's batched eigh fans out into the intra-op pool it runs on and waits; two at once can hold
    every worker of a 2-core pool (a deadlock, seen with the seeds vmapped). Every eigh here goes through
    curvature.eigh, which maps over a batch: no call is batched, per seed or vmapped (jnp.linalg.eigh
    would batch all five)."""
    from sandbox.experiments.hessian_outliers import measurement

    cfg = registry.load_config("hessian_outliers", quick=True)
    per_seed = measurement(cfg, 4)
    assert batched_eigh_shapes(jax.make_jaxpr(per_seed)(0).jaxpr) == []
    assert batched_eigh_shapes(jax.make_jaxpr(jax.vmap(per_seed))(jnp.arange(2)).jaxpr) == []


def test_the_rule_fails_without_a_gap_or_without_the_class_mean_directions():
    from sandbox.experiments.hessian_outliers import Config, gap_ratios, judge

    # C = 4: three outliers 10, 9, 8, then a bulk 3, 2.9, 2.8, 2.7, 2.6 (top 2C = 8 values)
    vals = np.array([10.0, 9.0, 8.0, 3.0, 2.9, 2.8, 2.7, 2.6])
    gap, bulk = gap_ratios(vals, 4)
    assert gap == pytest.approx(8.0 / 2.9) and bulk == pytest.approx(max(2.9 / 2.7, 2.8 / 2.6))
    vecs = np.eye(8, 20)
    density = (np.zeros(3), np.zeros(3))

    def measured(h_vals, mean_overlap):
        return 0.01, 1.0, (h_vals, vecs), (h_vals, vecs), 3.05, h_vals, mean_overlap, density

    ok = judge(Config(), 4, 0, measured(vals, 0.95))
    assert ok["passed"] and ok["outliers_hessian"] == 3
    smooth = np.array([10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0])  # a smooth spectrum: no gap after the outliers
    assert not judge(Config(), 4, 0, (0.01, 1.0, (smooth, vecs), (smooth, vecs), 6.5, smooth, 0.95, density))[
        "checks"]["gap"]
    wrong_directions = judge(Config(), 4, 0, measured(vals, 0.5))  # outliers not along the class means
    assert not wrong_directions["passed"] and not wrong_directions["checks"]["class_mean_subspace"]
