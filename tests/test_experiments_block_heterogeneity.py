"""Block heterogeneity, quick variant (a 1-layer micro transformer vs a ReLU MLP of similar size, at init)."""

import pytest

from experiments import registry


@pytest.mark.slow
def test_transformer_blocks_are_more_heterogeneous(tmp_path):
    summary = registry.run("block_heterogeneity", tmp_path, quick=True, progress=False)
    t, m = summary["measured"]["transformer"], summary["measured"]["mlp"]
    assert sorted(t["pairwise_js_distance"]) == ["block_0/attn | block_0/mlp", "embed | block_0/attn",
                                                 "embed | block_0/mlp"]
    assert len(m["pairwise_js_distance"]) == 3  # layer_0..layer_2
    assert 0.5 < t["num_params"] / m["num_params"] < 2  # models of similar size
    for res in (t, m):
        assert all(0 <= d <= 1 for d in res["pairwise_js_distance"].values())
        assert res["mean_js_distance"] == pytest.approx(sum(res["pairwise_js_distance"].values()) / 3)
    # a ReLU MLP's Hessian blocks are PSD-dominated at init; the transformer's are indefinite
    assert min(lo for lo, _ in m["block_extremes"].values()) > -1e-3
    assert all(lo < 0 < hi for lo, hi in t["block_extremes"].values())
    assert t["mean_js_distance"] > 2 * m["mean_js_distance"]
    assert summary["verdict"] == "pass"
    assert (tmp_path / "figures" / "block_densities.png").stat().st_size > 0


def test_js_distance_matches_scipy():
    import numpy as np
    from scipy.spatial import distance

    from experiments.block_heterogeneity import js_distance

    rng = np.random.default_rng(0)
    p, q = rng.random(50), rng.random(50)
    q[:10] = 0  # zero mass where the other has some
    assert js_distance(p, q) == pytest.approx(distance.jensenshannon(p, q, base=2), rel=1e-12)
    assert js_distance(p, p) == pytest.approx(0.0, abs=1e-7)
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)  # disjoint
