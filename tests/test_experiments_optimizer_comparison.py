"""The optimizer comparison experiment, quick variant: a fair race with a known winner."""

import json

from experiments import registry


def test_quick_comparison(tmp_path):
    summary = registry.run("optimizer_comparison", tmp_path, quick=True, progress=False)
    rows = {r["optimizer"]: r for r in summary["table"]}
    # at the same small step size, Adam's per-coordinate scaling moves much further than SGD
    assert rows["adamw"]["final_val_loss"] < rows["sgd"]["final_val_loss"]
    assert summary["best"] == "adamw"
    assert all(r["final_val_loss_std"] > 0 for r in rows.values())  # two seeds really differ
    assert all(r["top_hessian_eigenvalue"] > 0 for r in rows.values())
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "figures" / "val_loss.png").stat().st_size > 10_000
