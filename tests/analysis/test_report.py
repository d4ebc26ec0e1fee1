"""Watching and comparing runs: TensorBoard events beside metrics.jsonl, `sandbox report`, `sandbox compare`."""

import json
import re

import numpy as np
import pytest
from conftest import TINY_RUN_OVERRIDES

from sandbox.analysis import report
from sandbox.cli import main
from sandbox.train import config, events, records, session


def test_event_files_hold_every_metrics_row(tiny_run):
    run_dir, _ = tiny_run
    rows = records.read_metrics(run_dir / "metrics.jsonl")
    scalars = events.read(run_dir / "events")
    for key in ("train_loss", "val_loss", "learning_rate", "grad_norm", "tokens_per_second"):
        got = scalars[events.tag(key)]
        assert [s for s, _ in got] == [r["step"] for r in rows if key in r]
        np.testing.assert_allclose([v for _, v in got], [r[key] for r in rows if key in r], rtol=1e-6)  # float32


def test_a_resume_purges_the_events_after_its_checkpoint(tmp_path):
    log = events.EventLog(tmp_path)
    for step in (1, 2, 3):
        log.write({"step": step, "train_loss": float(step)})
    log.close()
    log = events.EventLog(tmp_path, resume_step=2)  # a resume from step 2's checkpoint: step 3 is done again
    log.write({"step": 3, "train_loss": 30.0})
    log.close()
    assert events.read(tmp_path)["loss/train"] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_report_of_a_run_records_its_config_version_commit_and_machine(tiny_run, tmp_path, capsys):
    run_dir, trained = tiny_run
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    prov = report.provenance()
    assert (run_dir / "config.yaml").read_text().splitlines()[3] in page  # the resolved config, verbatim
    assert prov["sandbox_version"] in page and prov["machine"] in page
    assert (prov["git_commit"] or "not a git checkout") in page
    assert f"{trained['final_val_loss']:.4f}" in page and trained["eval_set"] in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 1
    assert main(["report", str(tmp_path)]) == 2 and "is not a train run folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory):
    path = tmp_path_factory.mktemp("seed1") / "micro"
    session.start(config.load("configs/tiny.yaml", [*TINY_RUN_OVERRIDES, "train.seed=1"]), path, progress=False)
    return path


def test_compare_tabulates_the_runs_their_differences_and_the_seed_spread(tiny_run, other_seed, tmp_path, capsys):
    run_dir, _ = tiny_run
    out = tmp_path / "cmp"
    assert main(["compare", str(run_dir), str(other_seed), "--out", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["differences"] == {"train.seed": [0, 1]}
    vals = [records.read_json(r / "summary.json")["final_val_loss"] for r in (run_dir, other_seed)]
    group, = result["seed_groups"]
    assert group["n"] == 2 and group["mean"] == pytest.approx(np.mean(vals), rel=1e-12)
    assert group["std"] == pytest.approx(abs(vals[0] - vals[1]) / np.sqrt(2), rel=1e-12)  # sample std of two
    page = (out / "compare.html").read_text()
    assert "train.seed" in page and "provenance" in page and (out / "losses.png").is_file()
    said = capsys.readouterr().out
    assert f"{group['mean']:.4f} ± {group['std']:.4f} (mean ± sample std over 2 runs)" in said
    assert main(["compare", str(run_dir)]) == 2
