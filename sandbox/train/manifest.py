"""A checkpoint's manifest: its run, its step and the size and SHA-256 of each of its files, itself checksummed.

Written once orbax is done. A checkpoint folder with an intact manifest is complete, unchanged since
it was saved, and saved by this run at this step; one without a manifest is a save that did not
finish; anything else is refused and never restored, naming what is wrong: files missing, truncated,
flipped or not listed, a manifest edited (its own checksum), a checkpoint of another run (the run id
in the run folder's marker, `sandbox.rundir`) or one renamed to another step.

    {"run": RUN_ID, "step": N, "files": {PATH: {"bytes", "sha256"}}, "sha256": sha256 of the other three}
"""

import hashlib
import json
from pathlib import Path

from sandbox import rundir
from sandbox.files import replace_atomically

NAME = "sandbox_manifest.json"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != NAME)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _seal(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def run_id(folder: Path) -> str | None:
    """The id of the run that `folder` (RUN/checkpoints/STEP) belongs to, from the run's marker."""
    return (rundir.marker(Path(folder).parent.parent) or {}).get("run_id")


def write(folder: Path) -> None:
    """Record the run, the step (the folder's name) and every file under `folder`, atomically."""
    folder = Path(folder)
    entries = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in _files(folder)}
    body = {"run": run_id(folder), "step": int(folder.name), "files": entries}
    body["sha256"] = _seal(body)
    replace_atomically(folder / NAME, lambda tmp: tmp.write_text(json.dumps(body, indent=1) + "\n"))


def has(folder: Path) -> bool:
    return (Path(folder) / NAME).is_file()


def _read(folder: Path) -> dict | str:
    """The manifest's body if it is sealed, else what is wrong with it."""
    try:
        body = json.loads((folder / NAME).read_text())
    except FileNotFoundError:
        return "it has no manifest (its save did not finish)"
    except (OSError, ValueError):
        return f"its {NAME} is unreadable"
    if not (isinstance(body, dict) and {"run", "step", "files", "sha256"} <= body.keys()
            and isinstance(body["files"], dict)):
        return f"its {NAME} lacks the run, step and files it must name (written by an older sandbox, or edited)"
    seal = body.pop("sha256")
    if seal != _seal(body):
        return f"its {NAME} was edited after saving (its own checksum does not match)"
    return body


def damage(folder: Path) -> str | None:
    """None if the checkpoint is this run's, at this step, and every file is as saved, else what is wrong."""
    folder = Path(folder)
    body = _read(folder)
    if isinstance(body, str):
        return body
    mine = run_id(folder)
    if body["run"] != mine:
        return (f"it was saved by another run (run id {body['run']}, this run is {mine}): a checkpoint copied "
                "from elsewhere is never used")
    if str(body["step"]) != folder.name:
        return f"it was saved as step {body['step']}, not {folder.name} (a renamed checkpoint is never used)"
    unlisted = sorted(set(str(p.relative_to(folder)) for p in _files(folder)) - set(body["files"]))
    if unlisted:
        return f"{unlisted[0]} is not in its manifest ({len(unlisted)} files are not)"
    for name, want in body["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, {want['bytes']} were saved (truncated or overwritten)"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its checksum (its bytes changed after saving)"
    return None
