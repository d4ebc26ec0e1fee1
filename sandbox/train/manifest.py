"""A checkpoint's manifest: the size and SHA-256 of each of its files, written once orbax is done.

A checkpoint folder with an intact manifest is complete and unchanged since it was saved; one
without a manifest is a save that did not finish; one whose files disagree with their manifest
(missing, truncated, flipped bytes) is damaged and is never restored.
"""

import hashlib
import json
from pathlib import Path

from sandbox.files import replace_atomically

NAME = "sandbox_manifest.json"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != NAME)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write(folder: Path) -> None:
    """Record every file under `folder` (relative path -> bytes, sha256), atomically."""
    folder = Path(folder)
    entries = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in _files(folder)}
    replace_atomically(folder / NAME, lambda tmp: tmp.write_text(json.dumps(entries, indent=1) + "\n"))


def has(folder: Path) -> bool:
    return (Path(folder) / NAME).is_file()


def damage(folder: Path) -> str | None:
    """None if every file listed in the manifest is there with its size and checksum, else what is wrong."""
    folder = Path(folder)
    try:
        entries = json.loads((folder / NAME).read_text())
    except FileNotFoundError:
        return "it has no manifest (its save did not finish)"
    except (OSError, ValueError):
        return f"its {NAME} is unreadable"
    for name, want in entries.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, {want['bytes']} were saved (truncated or overwritten)"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its checksum (its bytes changed after saving)"
    return None
