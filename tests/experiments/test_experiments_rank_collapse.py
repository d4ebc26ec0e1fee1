"""Rank collapse reproduction (quick): the pure stack collapses, scaled skip connections keep the rank."""

import json

import numpy as np
import pytest
from jax import enable_x64
from sandbox.experiments import registry
from sandbox.experiments.rank_collapse import fitted_slope, rank1_residual, uniformity_residual


def test_residuals_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    with enable_x64():
        u, s, vt = np.linalg.svd(x)
        x1 = s[0] * np.outer(u[:, 0], vt[0])  # the best rank-1 approximation (Eckart-Young)
        assert float(rank1_residual(x)) == pytest.approx(np.linalg.norm(x - x1) / np.linalg.norm(x), rel=1e-12)
        rows = np.tile(x[0], (6, 1))
        assert float(rank1_residual(rows)) < 1e-12 and float(uniformity_residual(rows)) < 1e-12
    assert fitted_slope(np.exp(-2.0 * np.arange(8)), 1e-12) == pytest.approx(-2.0)
    assert fitted_slope(np.array([1.0, 1e-3, 1e-20, 1e-20]), 1e-12) == pytest.approx(np.log(1e-3))


def test_the_log_ratio_tells_doubly_from_singly_exponential_and_the_rule_can_fail():
    from sandbox.experiments.rank_collapse import Config, judge, log_ratios

    cfg = Config()
    cubic = np.array([0.9, 0.3] + [0.3 ** (3**k) for k in range(1, 4)])  # r_{l+1} = r_l^3: 0.027, 2e-5, 8e-15
    ratios = log_ratios(cubic, 1e-12)
    assert ratios == pytest.approx([3.0, 3.0])  # the last step falls below the floor and is not counted
    assert judge(ratios, 0.9, cfg) == {"doubly_exponential": True, "skip_keeps_rank": True}
    single = np.exp(-3.0 * np.arange(9))  # e^{-3l}: ratios (l + 1)/l = 2, 1.5, 1.33, ...
    assert max(log_ratios(single, 1e-12)) == pytest.approx(2.0)
    assert not judge(log_ratios(single, 1e-12), 0.9, cfg)["doubly_exponential"]
    assert not judge([3.0], 0.9, cfg)["doubly_exponential"]  # one ratio cannot tell
    assert not judge(ratios, 0.03, cfg)["skip_keeps_rank"]  # plain skip keeping 3% of the residual


def test_rank_collapse_quick(tmp_path):
    summary = registry.run("rank_collapse", tmp_path, quick=True, progress=False)
    assert summary["seeds"] == [0, 1, 2]
    for s in summary["per_seed"]:
        m, checks = s["measured"], s["details"]["checks"]
        ratios = s["details"]["attention_log_ratios"]
        assert checks["doubly_exponential"] == (len(ratios) >= 2 and m["attention: median log-residual ratio"] >= 2.0)
        assert all(r > 2 for r in ratios)  # each measured step is steeper than any single exponential's
        assert checks["skip_keeps_rank"] == (m["skip: final / initial"] >= 0.5)
        assert s["verdict"] == ("pass" if all(checks.values()) else "fail")
        # pure attention shrinks far faster than unscaled skip, which shrinks faster than scaled skip
        assert m["attention: fitted slope"] < m["skip: fitted slope"] < m["skip_scaled: fitted slope"] + 1e-9
        assert m["skip_scaled: final / initial"] >= 0.5  # the control keeps the rank
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["verdict"] == summary["verdict"] and summary["expected"]["source"].startswith("Dong")
    if summary["verdict"] == "not reproduced":
        assert "skip" in summary["not_reproduced"] or "ratio" in summary["not_reproduced"]
    assert (tmp_path / "residual_vs_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
