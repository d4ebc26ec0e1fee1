"""One self-contained HTML page of results: a table whose every number says what it was measured on, and
figures (embedded PNGs) each with its caption in words."""

import base64
import html
from pathlib import Path


def page(title: str, rows: list[tuple[str, str, str]], figures: dict, folder: Path, note: str = "") -> str:
    """The page: rows (quantity, value, measured on), then each figure file of `folder` with its caption."""
    cell = lambda x: f"<td>{html.escape(x)}</td>"  # noqa: E731
    table = "".join(f"<tr>{cell(q)}{cell(v)}{cell(m)}</tr>" for q, v, m in rows)
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode((Path(folder) / name).read_bytes()).decode()}" '
        f'alt="{html.escape(name)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        for name, caption in figures.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:auto}}td,th{{padding:2px 12px;"
            f"text-align:left}}img{{max-width:100%}}figcaption{{font-size:90%;margin-bottom:2em}}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><table><tr><th>quantity</th><th>value</th><th>measured on</th>"
            f"</tr>{table}</table><p>{html.escape(note)}</p>{images}</body></html>")
