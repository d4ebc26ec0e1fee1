"""Folders the sandbox writes: owned (a marker names the command that made them) and locked.

The rules, for every command:
- a command writes only into a folder that is new, empty, or, with `force`, one the same command
  made (its `MARKER` names the command and lists every file the command wrote), that holds nothing
  else, that is not a training run (unless the command is `train`) and that is not an input of the
  same command (nor holds one);
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
def claim(path: Path, command: str, force: bool = False, inputs=(), extra: dict | None = None):
    """Make `path` this command's output folder and hold its lock while the body writes it.

    New or empty folders are taken; a folder with results only with `force`, and only if the
    same command made it (see the module's rules) and it is not one of `inputs`; `extra` joins the
    marker. Refusals change nothing.
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
        _refuse_replacing(path, command)  # a folder of someone else's: not even a lock file is written there
    path.mkdir(parents=True, exist_ok=True)
    with lock(path):  # first the lock: a live writer is named as such, and its files settle first
        if _holds_results(path):
            _refuse_replacing(path, command)
        for item in path.iterdir():
            if item.name != LOCK:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        note = {"command": command, "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "pid": os.getpid(), "files": [], **(extra or {})}
        _write_marker(path, note)
        with recording(path, before=set()):
            yield path


def files(path: Path) -> set[str]:
    """The paths (relative to `path`) of every file and link under folder `path`, bookkeeping aside."""
    path = Path(path)
    return {str(p.relative_to(path)) for p in path.rglob("*")
            if (p.is_symlink() or not p.is_dir()) and p.relative_to(path).parts[0] not in _BOOKKEEPING}


def _write_marker(path: Path, note: dict) -> None:
    replace_atomically(Path(path) / MARKER, lambda tmp: tmp.write_text(json.dumps(note) + "\n"))


def annotate(path: Path, **fields) -> None:
    """Set `fields` in the marker of folder `path` (whose lock the caller holds)."""
    _write_marker(path, {**(marker(path) or {}), **fields})


def _stats(path: Path) -> dict[str, tuple]:
    out = {}
    for name in files(path):
        try:
            st = os.lstat(Path(path) / name)
            out[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            pass
    return out


@contextmanager
def recording(path: Path, before: set | None = None):
    """Add to the marker of `path` every file the body creates or rewrites (also when it fails), so that
    `--force` later knows them as the sandbox's; files that vanished are dropped from the list."""
    path = Path(path)
    seen = _stats(path) if before is None else {}
    try:
        yield path
    finally:
        note = marker(path)
        if note is not None:
            now = _stats(path)
            written = {name for name, st in now.items() if seen.get(name) != st}
            note["files"] = sorted((set(note.get("files") or ()) | written) & set(now))
            _write_marker(path, note)


def _refuse_replacing(path: Path, command: str) -> None:
    """Raise unless `force` may replace folder `path` for `command` (see the module's rules)."""
    note = marker(path)
    if note is None:
        raise SandboxError(f"{path} was not made by the sandbox (it has no {MARKER}); "
                           "--force only replaces the sandbox's own folders. Choose another --out")
    if note.get("command") != command:
        raise SandboxError(f"{path} was made by `sandbox {note.get('command')}`, not `sandbox {command}`; --force "
                           "only replaces a folder of the same command. Choose another --out (nothing was changed)")
    if command != "train" and (path / "checkpoints").exists():
        raise SandboxError(f"{path} holds checkpoints (a training run); only `sandbox train --force` may replace it. "
                           "Choose another --out (nothing was changed)")
    foreign = sorted(files(path) - set(note.get("files") or ()))
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise SandboxError(f"{path} holds files `sandbox {command}` did not write: {', '.join(foreign[:3])}{more}; "
                           "--force never deletes them. Move them away or choose another --out (nothing was changed)")


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
