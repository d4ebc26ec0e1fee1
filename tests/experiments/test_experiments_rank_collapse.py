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


def test_rank_collapse_quick(tmp_path):
    summary = registry.run("rank_collapse", tmp_path, quick=True, progress=False)
    assert summary["verdict"] == "pass", summary["checks"]
    m = summary["measured"]
    assert len(m["attention"]["rank1"]) == 3  # seeds
    assert m["attention"]["aggregate"]["slope_max"] <= -1.0
    assert min(m["skip_scaled"]["final_over_initial"]) >= 0.5
    # pure attention shrinks far faster than unscaled skip, which shrinks faster than scaled skip
    assert m["attention"]["aggregate"]["slope_mean"] < m["skip"]["aggregate"]["slope_mean"] \
        < m["skip_scaled"]["aggregate"]["slope_mean"] + 1e-9
    assert json.loads((tmp_path / "summary.json").read_text())["verdict"] == "pass"
    assert (tmp_path / "residual_vs_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
