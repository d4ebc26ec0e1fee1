"""Precision reproduction (quick): run through the CLI, its claims and its run folders.

The rule is tested on constructed losses where each claim fails; the quick variant (2 seeds, 120 steps)
asserts what the mechanisms give (stochastic/Kahan updates end closer to fp32 than round-to-nearest, fp16
underflow with and without loss scaling) and a verdict computed per seed from its own losses.
"""

import json

import jax
import numpy as np
import pytest
from sandbox.experiments.precision import FP16, POLICIES, Config, below_half_ulp, judge

from sandbox import rundir
from sandbox.cli import main
from sandbox.train import checkpoint


def test_below_half_ulp_counts_the_weights_whose_adam_step_rounds_away():
    # bf16 has 7 stored mantissa bits: ulp(1) = 2^-7, ulp(0.01) = 2^-14 (0.01 in [2^-7, 2^-6))
    params = {"a": np.array([1.0, -1.5, 0.01]), "b": np.array([0.0, 2.0**-20])}
    assert below_half_ulp(params, 1e-3) == 0.5  # 1 and 1.5 (half ulp 2^-8 > 1e-3); not 0.01, 2^-20; 0 skipped
    assert below_half_ulp(params, 2.0**-7) == 0.0  # a step of a whole ulp(1) survives everywhere
    assert below_half_ulp(params, 1e-9) == 1.0


def test_the_rule_judges_each_seeds_losses_and_fails_where_a_claim_does():
    good = {"fp32": 0.50, "bf16_nearest": 0.52, "bf16_stochastic": 0.5005, "bf16_kahan": 0.4998,
            "fp16_unscaled": 0.5001, "fp16_loss_scaled": 0.5002, "fp16_unscaled_small": 0.60,
            "fp16_loss_scaled_small": 0.501}
    cfg = Config()
    assert all(judge(good, cfg).values())
    for change, check in (({"bf16_nearest": 0.503}, "bf16_nearest_above_fp32"),  # nearest no worse: 0.6% of L
                          ({"bf16_stochastic": 0.505}, "stochastic_closes_gap"),  # leaves a quarter of the gap
                          ({"bf16_kahan": 0.49}, "kahan_closes_gap"),  # better than fp32 by half the gap: not noise
                          ({"fp16_loss_scaled": 0.504}, "fp16_scaled_matches_fp32"),
                          ({"fp16_unscaled_small": 0.501}, "fp16_unscaled_small_above_fp32"),
                          ({"fp16_loss_scaled_small": 0.55}, "loss_scaling_closes_gap")):
        checks = judge({**good, **change}, cfg)
        assert not checks[check], change
    assert not judge({**good, "bf16_nearest": 0.49}, cfg)["stochastic_closes_gap"]  # no gap: nothing to close


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("precision") / "run"
    assert main(["run", "precision", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text())


@pytest.mark.slow  # 8 training runs: ~65 s of CPU with a warm compilation cache
def test_quick_run_measures_the_mechanisms_and_judges_each_seed(quick):
    out, summary = quick
    seeds = summary["per_seed"]
    assert summary["seeds"] == [0, 1] and len(seeds) == 2
    for s in seeds:
        m = s["measured"]
        assert m["val_loss_fp32"] < np.log(4) - 0.2  # learnt the order-2 source (uniform over 4 tokens: ln 4)
        # round-to-nearest loses small updates; stochastic rounding and Kahan keep them
        assert m["gap_bf16_nearest"] > 0.005
        for name in ("bf16_stochastic", "bf16_kahan"):
            assert abs(m[f"gap_{name}"]) < m["gap_bf16_nearest"] / 2
        for name in ("fp16_loss_scaled", "fp16_loss_scaled_small"):  # loss scaling matches fp32
            assert abs(m[f"gap_{name}"]) < 0.005
        assert m["gap_fp16_unscaled_small"] > 0.005  # unscaled at a large model's gradient scale trains worse
        # the cosine schedule's final lr (0.1x) leaves far more weights whose Adam step is below half a bf16 ulp
        assert 0 < 5 * m["below_half_ulp_peak_lr"] < m["below_half_ulp_final_lr"] < 1
        losses = {name: m[f"val_loss_{name}"] for name in POLICIES}
        assert s["details"]["checks"] == judge(losses, Config())  # per seed, from that seed's own losses
        assert s["verdict"] == ("pass" if all(s["details"]["checks"].values()) else "fail")
    assert summary["verdict"] == ("pass" if all(s["verdict"] == "pass" for s in seeds) else "not reproduced")
    under, zeros = summary["mean_underflow_fraction"], summary["mean_zero_fraction"]
    assert under["fp16_unscaled"] > 100 * under["fp16_loss_scaled"]
    assert under["fp16_unscaled"] == pytest.approx(summary["predicted_underflow_fraction"], rel=0.1)
    _, params, _ = checkpoint.load_run(out / "fp32")
    assert summary["gradient_entries"] == sum(np.size(x) for x in jax.tree.leaves(params))
    assert zeros["fp16_unscaled_small"] > 0.05 and zeros["fp16_loss_scaled_small"] < 0.05
    assert under["fp16_unscaled_small"] > 0.9  # at C = 2^-10 nearly every entry is below 2^-14
    assert summary["skipped_steps"]["fp16_unscaled"] == 0  # no scale, nothing to overflow


@pytest.mark.slow
def test_quick_run_folders_follow_the_rules(quick, capsys):
    out, summary = quick
    assert rundir.marker(out)["command"] == "run precision"
    for name in POLICIES:  # each policy's training run is a claimed folder of its own
        assert rundir.marker(out / name)["command"] == "train"
        assert (out / name / "config.yaml").exists() and (out / name / "metrics.jsonl").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*POLICIES, "figures", "summary.json", "config.yaml", rundir.MARKER, rundir.LOCK])
    assert (out / "figures" / "precision.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["figures"] == ["precision.png"]
    with rundir.lock(out):  # released when the command ended
        pass
    before = (out / "summary.json").read_bytes()
    capsys.readouterr()
    assert main(["run", "precision", "--quick", "--no-progress", "--out", str(out)]) == 2  # no --force: refused
    assert "already exists" in capsys.readouterr().err
    assert (out / "summary.json").read_bytes() == before and set(FP16) <= {p.name for p in out.iterdir()}
