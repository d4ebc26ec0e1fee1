"""Block heterogeneity, quick variant (a 1-layer micro transformer vs a ReLU MLP of similar size, at init)."""

import pytest
from sandbox.experiments import registry


@pytest.mark.slow
def test_transformer_blocks_are_more_heterogeneous_at_every_seed(tmp_path):
    summary = registry.run("block_heterogeneity", tmp_path, quick=True, progress=False)
    assert summary["seeds"] == [0, 1]
    for seed in summary["per_seed"]:
        t, m = seed["details"]["transformer"], seed["details"]["mlp"]
        assert sorted(t["pairwise_js_distance"]) == ["block_0/attn | block_0/mlp", "embed | block_0/attn",
                                                     "embed | block_0/mlp"]
        assert len(m["pairwise_js_distance"]) == 3  # layer_0..layer_2
        assert 0.5 < t["num_params"] / m["num_params"] < 2  # models of similar size
        for model, res in (("transformer", t), ("mlp", m)):
            assert all(0 <= d <= 1 for d in res["pairwise_js_distance"].values())
            mean = seed["measured"][f"{model} mean JS distance"]
            assert mean == pytest.approx(sum(res["pairwise_js_distance"].values()) / 3)
        # a ReLU MLP's Hessian blocks are PSD-dominated at init; the transformer's are indefinite
        assert min(lo for lo, _ in m["block_extremes"].values()) > -1e-3
        assert all(lo < 0 < hi for lo, hi in t["block_extremes"].values())
        # the direction of the effect, with a margin, at every seed
        assert seed["measured"]["transformer mean JS distance"] > 2 * seed["measured"]["mlp mean JS distance"]
        assert seed["verdict"] == "pass"
    pairs = [s["details"]["transformer"]["pairwise_js_distance"] for s in summary["per_seed"]]
    assert pairs[0] != pairs[1]  # the seeds really differ
    assert summary["aggregate"]["ratio transformer / mlp"]["min"] > 2
    assert summary["verdict"] == "pass"
    for name in ("block_densities.png", "js_distances.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0


def test_densities_on_a_shared_grid_integrate_to_one_and_use_the_curvature_kernel():
    import numpy as np
    from sandbox.experiments.block_heterogeneity import densities

    nodes_a, nodes_b = np.array([[0.0, 1.0]]), np.array([[2.0, 3.0]])
    weights = np.array([[0.5, 0.5]])
    grid, (pa, pb) = densities([(nodes_a, weights), (nodes_b, weights)], 4001, 0.02)
    assert grid[0] < 0 and grid[-1] > 3  # one grid spans both
    dx = grid[1] - grid[0]
    assert pa.sum() * dx == pytest.approx(1.0, abs=1e-3) and pb.sum() * dx == pytest.approx(1.0, abs=1e-3)
    sigma = 0.02 * 3.0
    peak = 0.5 / (sigma * np.sqrt(2 * np.pi))  # each node carries half the mass
    assert pa.max() == pytest.approx(peak, rel=1e-3)


def test_js_distance_matches_scipy():
    import numpy as np
    from sandbox.experiments.block_heterogeneity import js_distance
    from scipy.spatial import distance

    rng = np.random.default_rng(0)
    p, q = rng.random(50), rng.random(50)
    q[:10] = 0  # zero mass where the other has some
    assert js_distance(p, q) == pytest.approx(distance.jensenshannon(p, q, base=2), rel=1e-12)
    assert js_distance(p, p) == pytest.approx(0.0, abs=1e-7)
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)  # disjoint
