"""Laplace overconfidence, quick variant (3 seeds): MAP -> 1 far away, Laplace at Theorem 2's limit, calibrated."""

import pytest
from sandbox.experiments import registry


@pytest.mark.slow
def test_laplace_bounds_far_away_confidence(tmp_path):
    summary = registry.run("laplace_overconfidence", tmp_path, quick=True, progress=False)
    rows = summary["measured"]["per_seed"]
    assert len(rows) == 3 and {r["seed"] for r in rows} == {0, 1, 2}
    for r in rows:
        assert r["map_far_confidence_mean"] > 0.99, r  # the MAP ReLU net is sure far away
        # below MAP's (by little where held-out NLL picks a large prior precision, i.e. Laplace ~ MAP)
        assert r["laplace_far_confidence_mean"] < r["map_far_confidence_mean"], r
        assert r["laplace_far_confidence_max"] <= r["theorem2_uniform_bound"] + 1e-6, r
        assert r["laplace_minus_limit_max"] < 0.01, r  # the probit confidence sits at Theorem 2's limit
        # in distribution no worse: the paired per-point NLL difference within 2 of its standard errors
        assert r["nll_laplace_minus_map"] == pytest.approx(r["nll_laplace"] - r["nll_map"], abs=1e-6), r  # f32
        assert r["nll_laplace_minus_map"] <= 2 * r["nll_laplace_minus_map_se"], r
        assert r["test_accuracy"] > 0.9
        assert all(r["checks"].values()) and r["verdict"] == "pass"
    agg = summary["measured"]["aggregate"]["laplace_far_confidence_mean"]
    assert agg["min"] <= agg["mean"] <= agg["max"]
    assert summary["verdict"] == "pass" and "pass_rule" in summary["expected"]
    for name in ("confidence_maps.png", "confidence_vs_alpha.png", "evidence.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0
