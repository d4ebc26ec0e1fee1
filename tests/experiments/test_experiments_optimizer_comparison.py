"""The optimizer comparison experiment, quick variant: a fair race with a known winner."""

import json

import pytest
from sandbox.experiments import registry


def test_quick_comparison(tmp_path, capsys):
    summary = registry.run("optimizer_comparison", tmp_path, quick=True, progress=True)
    rows = {r["optimizer"]: r for r in summary["table"]}
    # at the same small step size, Adam's per-coordinate scaling moves much further than SGD
    assert rows["adamw"]["final_val_loss"] < rows["sgd"]["final_val_loss"]
    assert summary["best"] == "adamw"
    assert all(r["final_val_loss_std"] > 0 for r in rows.values())  # two seeds really differ
    assert all(r["top_hessian_eigenvalue"] > 0 for r in rows.values())
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    # one result layout (protocol.py): per seed, each optimizer's own final val loss; the mean-best wins every seed
    assert summary["seeds"] == [0, 1] and summary["expected"]["rule"].startswith("per seed")
    for j, s in enumerate(summary["per_seed"]):
        losses = {k.removeprefix("val loss "): v for k, v in s["measured"].items()}
        assert losses["adamw (lr 0.01)"] == rows["adamw"]["per_seed_val_loss"][j]
        assert s["verdict"] == ("pass" if min(losses, key=losses.get) == "adamw (lr 0.01)" else "fail")
    mean = sum(rows["adamw"]["per_seed_val_loss"]) / 2
    assert mean == pytest.approx(rows["adamw"]["final_val_loss"], rel=1e-5)  # the engine's mean over the same sets
    assert (tmp_path / "figures" / "val_loss.png").stat().st_size > 10_000
    # both optimizers were measured on the same eval sets (each seed its own), named in the summary
    assert {r["eval_set"] for r in rows.values()} == {summary["eval_set"]} == {"val/seed0..1/8x16x32"}
    assert {r["hessian_eval_set"] for r in rows.values()} == {"val/seed0/8x16x32[:1,:16]"}
    # the results table ends the output and is in the summary: a header and one line per optimizer
    lines = summary["table_text"]
    assert lines[0].split() == ["optimizer", "learning_rate", "final_val_loss", "final_val_loss_std",
                                "tokens_per_second", "top_hessian_eigenvalue"]
    assert [line.split()[0] for line in lines[1:]] == ["adamw", "sgd"]
    assert lines[1].split()[2] == f"{rows['adamw']['final_val_loss']:.4f}"
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[-3:] == [*lines[1:], "best: adamw"]
