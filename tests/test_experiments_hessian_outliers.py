"""Hessian outliers, quick variant (C = 4 and 6 clusters): about C outliers, carried by the GGN."""

import pytest

from experiments import registry


@pytest.mark.slow
def test_outliers_track_the_number_of_classes(tmp_path):
    summary = registry.run("hessian_outliers", tmp_path, quick=True, progress=False)
    rows = {r["num_classes"]: r for r in summary["measured"]}
    assert sorted(rows) == [4, 6]
    for c, r in rows.items():
        assert c - 1 <= r["outliers_hessian"] <= c, r  # C - 1 or C outliers (Papyan; Sagun et al.)
        assert c - 1 <= r["outliers_ggn"] <= c, r
        top = r["top_hessian"]
        assert top[r["outliers_hessian"] - 1] > 1.5 * top[r["outliers_hessian"]]  # set apart from the bulk
        assert r["ggn_max_relative_error_on_outliers"] < 0.15  # the GGN carries the outliers ...
        assert r["outlier_subspace_overlap"] > 0.9  # ... in the same directions
        assert r["train_accuracy"] > 0.9
    assert rows[6]["outliers_hessian"] > rows[4]["outliers_hessian"]  # more classes, more outliers
    assert summary["verdict"] == "pass"
    for name in ("density.png", "hessian_vs_ggn.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0


def test_count_outliers_stops_at_the_first_gap_above_the_dense_tail():
    from experiments.hessian_outliers import count_outliers

    eigs = [10.0, 9.0, 8.0, 3.0, 1.2, 1.0, 0.95, 0.9]  # outliers spread apart, then a dense bulk
    assert count_outliers(eigs, 1.3) == (4, pytest.approx(2.5))
    assert count_outliers([1.0, 0.9, 0.8, 0.7], 1.3) == (0, 1.0)  # all bulk: no outliers
