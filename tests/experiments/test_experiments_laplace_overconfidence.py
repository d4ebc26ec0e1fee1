"""Laplace overconfidence: the rule on constructed measurements (it can fail), and one quick run."""

import pytest
from sandbox.experiments import registry
from sandbox.experiments.laplace_overconfidence import Config, auroc, judge

GOOD = {"map_far_confidence_mean": 1.0, "auroc_laplace": 0.97, "one_minus_uniform_bound": 1e-3,
        "laplace_far_confidence_max": 0.6, "theorem2_uniform_bound": 0.999, "ece_laplace": 0.02, "ece_map": 0.03,
        "nll_laplace_minus_map": -0.01, "nll_laplace_minus_map_se": 0.01}


def test_auroc_is_the_probability_that_inside_scores_higher():
    assert auroc([0.9, 0.8], [0.3, 0.4]) == 1.0
    assert auroc([0.3, 0.4], [0.9, 0.8]) == 0.0
    assert auroc([0.5, 0.9], [0.5, 0.7]) == pytest.approx((0.5 + 0 + 1 + 1) / 4)  # ties count half


def test_the_rule_fails_where_laplace_is_as_sure_far_away_as_on_the_data():
    cfg = Config()
    assert all(judge(GOOD, cfg).values())
    for change, check in (({"auroc_laplace": 0.55}, "laplace_less_confident_far_away"),  # chance: the runs
                          ({"map_far_confidence_mean": 0.9}, "map_tends_to_1"),
                          ({"one_minus_uniform_bound": 0.0}, "below_theorem2_bound"),  # a bound of exactly 1
                          ({"ece_laplace": 0.05}, "ece_no_worse"),
                          ({"nll_laplace_minus_map": 0.03}, "nll_no_worse")):
        checks = judge({**GOOD, **change}, cfg)
        assert not checks[check] and sum(not v for v in checks.values()) == 1, change


@pytest.mark.slow
def test_quick_run_reports_separation_and_a_verdict_from_the_rule(tmp_path):
    summary = registry.run("laplace_overconfidence", tmp_path, quick=True, progress=False)
    assert summary["seeds"] == [0, 1]
    for s in summary["per_seed"]:
        m = s["measured"]
        assert m["map_far_confidence_mean"] > 0.99 and m["auroc_map"] < 0.1  # MAP is surer far away than on data
        assert 0 < m["one_minus_uniform_bound"] < 1 and m["laplace_far_confidence_max"] <= m["theorem2_uniform_bound"]
        assert m["laplace_minus_limit_max"] < 0.01  # the probit confidence sits at Theorem 2's limit
        assert s["verdict"] == ("pass" if all(s["details"]["checks"].values()) else "fail")
    assert summary["verdict"] in ("pass", "not reproduced", "fail")
    if summary["verdict"] == "not reproduced":
        assert "AUROC" in summary["not_reproduced"]
    for name in ("confidence_maps.png", "confidence_vs_alpha.png", "evidence.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0
