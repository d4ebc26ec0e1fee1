"""Text sources: the embedded CPython documentation corpus, or any UTF-8 file or folder.

`load_text("pydoc")` is the English documentation text that ships inside CPython
(`pydoc_data.topics`), so the sandbox trains on real text with no download.
"""

from pathlib import Path

from sandbox.errors import SandboxError

EMBEDDED = ("pydoc",)


def load_text(spec: str) -> str:
    """Return the text named by `spec`: "pydoc", a UTF-8 file, or a folder of UTF-8 files."""
    if spec == "pydoc":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))
    path = Path(spec).expanduser()
    if not path.exists():
        raise SandboxError(
            f"corpus {spec!r} not found: give an embedded corpus ({', '.join(EMBEDDED)}) "
            "or the path of a UTF-8 text file or folder"
        )
    if not (path.is_dir() or path.is_file()):
        raise SandboxError(f"corpus {spec!r} is not a regular file or folder (a device or pipe has no end to read to)")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    parts = []
    for f in files:
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise SandboxError(f"corpus file {f} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    text = "\n\n".join(parts)
    if not text.strip():
        raise SandboxError(f"corpus {spec!r} is empty: it holds no text to train on")
    return text
