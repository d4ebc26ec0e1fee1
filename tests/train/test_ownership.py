"""What `--force` may replace, what a resume may delete, and which checkpoint a run may use.

Every refusal is asserted with its message and with the files on disk unchanged. The session's tiny
run (conftest) is copied for each test; commands run in-process through `sandbox.cli.main`.
"""

import hashlib
import json
import shutil

import pytest
from omegaconf import OmegaConf

from sandbox import rundir
from sandbox.cli import main
from sandbox.train import checkpoint, manifest


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != rundir.LOCK}


@pytest.fixture
def run(tiny_run, tmp_path):
    """The training run alone: analyses other tests made inside the shared run (folders with markers of their
    own, such as hessian-<time>) are left out of the copy."""
    def analyses(folder, names):
        top = folder == str(tiny_run[0])
        return [n for n in names if top and (tiny_run[0] / n / rundir.MARKER).exists()]

    return shutil.copytree(tiny_run[0], tmp_path / "run", ignore=analyses)


def test_force_replaces_only_a_folder_of_the_same_command_holding_only_its_files(run, tmp_path, capsys):
    before = snapshot(run)
    assert main(["numerics", "formats", "--out", str(run), "--force"]) == 2
    assert "was made by `sandbox train`, not `sandbox numerics`" in capsys.readouterr().err
    other = shutil.copytree(run, tmp_path / "other")
    assert main(["spectra", str(other), "--out", str(run), "--force"]) == 2
    assert "was made by `sandbox train`, not `sandbox spectra`" in capsys.readouterr().err
    assert snapshot(run) == before
    # a folder numerics made, with a note of the user's inside: --force refuses, naming the note
    formats = tmp_path / "formats"
    assert main(["numerics", "formats", "--out", str(formats)]) == 0
    (formats / "NOTES.txt").write_text("mine")
    assert main(["numerics", "formats", "--out", str(formats), "--force"]) == 2
    assert "did not write: NOTES.txt" in capsys.readouterr().err and (formats / "NOTES.txt").read_text() == "mine"
    (formats / "NOTES.txt").unlink()
    assert main(["numerics", "formats", "--out", str(formats), "--force"]) == 0
    # the same inside a training run: `train --force` keeps the user's file
    (run / "figures" / "mine.png").write_bytes(b"png")
    assert main(["train", "configs/tiny.yaml", "--out", str(run), "--force"]) == 2
    assert "did not write: figures/mine.png" in capsys.readouterr().err and (run / "figures" / "mine.png").exists()


def test_only_train_replaces_a_folder_that_holds_checkpoints(tmp_path, capsys):
    folder = tmp_path / "made"
    with rundir.claim(folder, "hessian"):
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "x").write_text("state")
    with pytest.raises(Exception, match="holds checkpoints"):
        with rundir.claim(folder, "hessian", force=True):
            pass
    assert (folder / "checkpoints" / "x").read_text() == "state"


def test_resume_deletes_only_its_own_unfinished_save(run, capsys):
    mine = run / "checkpoints" / "99"
    mine.mkdir()
    (mine / "NOTES.txt").write_text("mine")
    assert checkpoint.unfinished_steps(run) == [] and checkpoint.strangers(run) == [mine]
    assert main(["train", "--resume", str(run), "train.steps=8"]) == 2
    assert "checkpoints/99 is not a checkpoint of this run" in capsys.readouterr().err
    assert (mine / "NOTES.txt").read_text() == "mine"
    # a save the run began (its marker says so) that never wrote its manifest is its own
    shutil.rmtree(mine)
    shutil.copytree(run / "checkpoints" / "4", run / "checkpoints" / "5")
    (run / "checkpoints" / "5" / manifest.NAME).unlink()
    rundir.annotate(run, saving=5)
    assert checkpoint.unfinished_steps(run) == [5] and checkpoint.strangers(run) == []
    checkpoint.drop(run, checkpoint.unfinished_steps(run))
    assert not (run / "checkpoints" / "5").exists() and rundir.marker(run)["saving"] is None


def _reseal(folder, edit):
    path = folder / manifest.NAME
    body = json.loads(path.read_text())
    body.pop("sha256")
    edit(body)
    body["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(body))


def test_a_checkpoint_knows_its_run_and_step(run, capsys):
    step = run / "checkpoints" / "4"
    assert checkpoint.damage(run, 4) is None
    note = rundir.marker(run)
    rundir.annotate(run, run_id="another")  # the same as copying the checkpoint into another run
    assert main(["sample", str(run), "--prompt", "ab", "--num-tokens", "2"]) == 2
    assert f"saved by another run (run id {note['run_id']}, this run is another)" in capsys.readouterr().err
    rundir.annotate(run, run_id=note["run_id"])
    step.rename(run / "checkpoints" / "3")
    assert "saved as step 4, not 3" in checkpoint.damage(run, 3)
    (run / "checkpoints" / "3").rename(step)
    text = (step / manifest.NAME).read_text()
    (step / manifest.NAME).write_text("{}")  # an emptied manifest
    assert "lacks the run, step and files" in checkpoint.damage(run, 4)
    body = json.loads(text)
    dropped = sorted(body["files"])[0]
    (step / manifest.NAME).write_text(json.dumps({**body, "files": {k: v for k, v in body["files"].items()
                                                                     if k != dropped}}))
    assert "was edited after saving" in checkpoint.damage(run, 4)
    (step / manifest.NAME).write_text(text)
    _reseal(step, lambda b: b["files"].pop(dropped))  # shortened and resealed: the file is still checked
    assert checkpoint.damage(run, 4) == f"{dropped} is not in its manifest (1 files are not)"


def test_a_config_edited_since_the_run_began_is_refused_naming_the_change(run, capsys):
    path = run / "config.yaml"
    edited = OmegaConf.load(path)
    edited.train.seed = 7
    OmegaConf.save(edited, path)
    assert main(["train", "--resume", str(run), "train.steps=8"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml was edited since the run began (train.seed: 0 -> 7)" in err and len(err.splitlines()) == 1
