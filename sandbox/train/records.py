"""What a run leaves behind: atomic files and metrics.jsonl (the folder itself: `sandbox.rundir`)."""

import json
from pathlib import Path

from sandbox.files import replace_atomically


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees a half-written file."""
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """Append-only metrics.jsonl; opening at `resume_step` drops rows logged after that step."""

    def __init__(self, path: Path | None, resume_step: int | None = None):
        """path None: keep this session's rows in `rows` only (a process that writes no files)."""
        self.path, self.rows = path, []
        if path is not None and resume_step is not None:
            kept = [r for r in read_metrics(path) if r["step"] <= resume_step]
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(path, "a") if path is not None else None

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
