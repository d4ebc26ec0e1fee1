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


def test_not_applicable_seeds_are_left_out_and_a_failed_rule_with_a_reason_is_not_reproduced():
    rows = results([1, 2, 3], [True, None, True])
    assert protocol.verdict(rows, EXPECTED) == "pass" and rows[1].as_dict()["verdict"] == "not applicable"
    failing = results([1, 2], [True, False])
    assert protocol.verdict(failing, EXPECTED) == "fail"
    assert protocol.verdict(failing, EXPECTED, not_reproduced="x stays below 0 at seed 11") == "not reproduced"
    assert protocol.verdict(results([1], [None]), EXPECTED) == "not reproduced"  # no seed within scope
    out = protocol.summary("demo", {"seed": 10}, EXPECTED, failing, not_reproduced="because y")
    assert out["verdict"] == "not reproduced" and out["not_reproduced"] == "because y"
    assert "not_reproduced" not in protocol.summary("demo", {}, EXPECTED, results([1], [True]), not_reproduced="z")


def test_sandbox_results_prints_one_table_across_experiment_folders(tmp_path, capsys):
    from sandbox.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    protocol.write(a, "demo", {"seed": 10}, EXPECTED, results([1.0, 3.0], [True, True]))
    protocol.write(b, "other", {"seed": 0}, EXPECTED, results([1.0], [False]), not_reproduced="x fell short")
    assert main(["results", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "2 pass" in out and "not reproduced" in out and "x fell short" in out
    assert out.count("demo") == 1 and "other" in out
    (tmp_path / "c").mkdir()
    assert main(["results", str(a), str(tmp_path / "c")]) == 2  # no summary.json: one line, nothing printed
    captured = capsys.readouterr()
    assert captured.err.startswith("error:") and "summary.json" in captured.err and captured.out == ""
    (tmp_path / "c" / "summary.json").write_text(json.dumps({"verdict": "maybe"}))
    assert main(["results", str(tmp_path / "c")]) == 2
    assert "layout" in capsys.readouterr().err
