"""The one writer of experiment results: seeds, aggregate, verdict over seeds, the written summary."""

import json

import numpy as np
import pytest
from sandbox.experiments import protocol

from sandbox.errors import SandboxError

EXPECTED = protocol.Expected(prediction="x > 0", source="a paper", rule="per seed: x > 0", reason="because")


def results(xs, passed):
    return [protocol.SeedResult(seed=10 + i, measured={"x": x, "label": "a", "flag": True, "none": None},
                                passed=p) for i, (x, p) in enumerate(zip(xs, passed))]


def test_aggregate_is_mean_std_min_max_of_the_numeric_values():
    rows = results([1.0, 2.0, 4.5], [True] * 3)
    rows[1].measured["y"] = 3  # only one seed has y
    agg = protocol.aggregate(rows)
    assert set(agg) == {"x", "y"}  # strings, bools and None are not aggregated
    assert agg["x"] == pytest.approx({"mean": 2.5, "std": float(np.std([1.0, 2.0, 4.5])), "min": 1.0,
                                      "max": 4.5, "n": 3})
    assert agg["y"] == {"mean": 3.0, "std": 0.0, "min": 3.0, "max": 3.0, "n": 1}


def test_the_verdict_needs_every_seed_unless_expected_says_otherwise_with_a_reason():
    assert protocol.verdict(results([1, 2, 3], [True, True, True]), EXPECTED) == "pass"
    assert protocol.verdict(results([1, 2, 3], [True, False, True]), EXPECTED) == "fail"
    two_thirds = protocol.Expected("p", "s", "r", "why", min_pass_fraction=2 / 3, combine_reason="noisy")
    assert protocol.verdict(results([1, 2, 3], [True, False, True]), two_thirds) == "pass"
    assert protocol.verdict(results([1, 2, 3], [False, False, True]), two_thirds) == "fail"
    with pytest.raises(SandboxError, match="reason"):
        protocol.Expected("p", "s", "r", "why", min_pass_fraction=0.5)


def test_seeds_start_at_the_first_seed_and_bad_counts_are_refused():
    class Cfg:
        seed, seeds = 13, 3

    assert protocol.seed_list(Cfg) == [13, 14, 15]
    for seed, seeds in ((0, 0), (0, 1.5), (-1, 2), (0, True)):
        with pytest.raises(SandboxError, match="seed"):
            protocol.check_seeds(seed, seeds)


def test_write_puts_per_seed_aggregate_expected_and_verdict_in_summary_json(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        seed: int = 10
        seeds: int = 2

    out = protocol.write(tmp_path, "demo", Cfg(), EXPECTED, results([1.0, 3.0], [True, False]), ["a.png"])
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == out
    assert on_disk["seeds"] == [10, 11] and on_disk["verdict"] == "fail"
    assert [s["verdict"] for s in on_disk["per_seed"]] == ["pass", "fail"]
    assert on_disk["aggregate"]["x"]["mean"] == 2.0
    assert on_disk["expected"]["rule"] == "per seed: x > 0" and on_disk["expected"]["reason"] == "because"
    assert on_disk["setup"] == {"seed": 10, "seeds": 2} and on_disk["figures"] == ["a.png"]
