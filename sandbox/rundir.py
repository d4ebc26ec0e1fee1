"""Folders the sandbox writes: owned (a marker names the command that made them) and locked.

The rules, for every command:
- a command writes only into a folder that is new, empty, or, with `force`, one the sandbox made
  itself (it holds `MARKER`) and that is not an input of the same command (nor holds one);
- while a command writes a folder it holds an OS lock on `LOCK` inside it (`fcntl.flock`: released
  by the kernel on any exit, so a killed process leaves no stale lock); a second writer is refused;
- analyses never write over earlier results: by default each writes a new `new_child` folder;
- a command whose output is one file (a tokenizer) writes a new path, or with `force` replaces a
  file the sandbox made (`output_file`), never a folder, another file or its own input.
"""

import datetime
import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.files import replace_atomically

MARKER = ".sandbox.json"
LOCK = ".sandbox.lock"
_BOOKKEEPING = {MARKER, LOCK}


def marker(path: Path) -> dict | None:
    """The marker of a folder the sandbox made ({"command", "created", ...}), else None."""
    try:
        return json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def timestamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_child(parent: Path, kind: str) -> Path:
    """A fresh path `parent/<kind>-<timestamp>` (suffixed -2, -3, ... if taken)."""
    base = Path(parent) / f"{kind}-{timestamp()}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _holds_results(path: Path) -> bool:
    return path.is_dir() and any(p.name not in _BOOKKEEPING for p in path.iterdir())


def _refuse_inputs(path: Path, inputs) -> None:
    here = path.resolve()
    for item in inputs:
        item = Path(item).resolve()
        if item == here or here in item.parents:
            raise SandboxError(f"--out {path} is (or holds) {item}, an input of this command; "
                               "choose another --out (nothing was changed)")


@contextmanager
def lock(path: Path):
    """Hold the write lock of folder `path` for the duration; refuse if another process holds it."""
    path = Path(path)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise SandboxError(f"{path} is being written by another sandbox process (pid {holder}); "
                               "wait for it to finish, or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def claim(path: Path, command: str, force: bool = False, inputs=()):
    """Make `path` this command's output folder and hold its lock while the body writes it.

    New or empty folders are taken; a folder with results only with `force`, and only if the
    sandbox made it (it holds MARKER) and it is not one of `inputs`. Refusals change nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SandboxError(f"--out {path} is a file, not a folder; choose another --out")
    if path.exists():
        _refuse_inputs(path, inputs)
    if _holds_results(path) and not force:
        raise SandboxError(f"{path} already exists and is not empty; choose another --out, "
                           "or pass --force to replace it (only folders the sandbox made can be replaced)")
    if _holds_results(path) and marker(path) is None:
        raise SandboxError(f"{path} was not made by the sandbox (it has no {MARKER}); "
                           "--force only replaces the sandbox's own folders. Choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    with lock(path):
        for item in path.iterdir():
            if item.name != LOCK:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        note = {"command": command, "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "pid": os.getpid()}
        replace_atomically(path / MARKER, lambda tmp: tmp.write_text(json.dumps(note) + "\n"))
        yield path


def output_file(path: Path, force: bool, made_by_sandbox, inputs=()) -> Path:
    """`path` checked as a one-file output: new, or with `force` a file `made_by_sandbox(path)` approves.

    Nothing is written here; the caller writes atomically (`sandbox.files.replace_atomically`).
    """
    path = Path(path)
    if path.is_dir():
        raise SandboxError(f"--out {path} is a folder; give the path of a file to write")
    _refuse_inputs(path, [i for i in inputs if Path(i).exists()])
    if path.exists() and not force:
        raise SandboxError(f"{path} already exists; choose another --out, or pass --force to replace it "
                           "(only files the sandbox made can be replaced)")
    if path.exists() and not made_by_sandbox(path):
        raise SandboxError(f"{path} was not made by the sandbox; --force only replaces the sandbox's own files. "
                           "Choose another --out")
    return path
