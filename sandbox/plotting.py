"""One place for figures: matplotlib's object API (no pyplot state, no backend switch), one style.

`figure()` returns a `Figure` and its axes, which render in a notebook as they are; `save` writes a
PNG atomically (a reader never sees half a file) and returns its file name. The PNG carries what the
figure says (`labels`: titles and axis labels) in its text chunks, so a file can be checked or
searched without looking at it.
"""

import json
from pathlib import Path

from matplotlib.figure import Figure

from sandbox.files import replace_atomically

STYLE = {"dpi": 120, "grid_alpha": 0.3}


def figure(width: float = 6.0, height: float = 3.5, nrows: int = 1, ncols: int = 1, **kwargs):
    """(fig, axes) with the sandbox's style: light grid, readable ticks."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    for ax in (axes.flat if hasattr(axes, "flat") else [axes]):
        ax.grid(alpha=STYLE["grid_alpha"])
        ax.tick_params(labelsize=8)
    return fig, axes


def labels(fig: Figure) -> dict:
    """{"title": the figure's suptitle (or ""), "axes": [{"title", "xlabel", "ylabel", "xticks"}] of each
    visible axes}: what a reader of the figure is told."""
    sup = fig.get_suptitle()
    axes = [{"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
             "xticks": [float(t) for t in ax.get_xticks()]} for ax in fig.axes if ax.get_visible()
            and ax.get_label() != "<colorbar>"]
    return {"title": sup, "axes": axes}


def save(fig: Figure, path: Path) -> str:
    """Write `fig` as a PNG at `path` (atomically), its `labels` as the PNG's Title and Description; returns
    the file name."""
    path = Path(path)
    said = labels(fig)
    meta = {"Title": said["title"] or (said["axes"][0]["title"] if said["axes"] else ""),
            "Description": json.dumps(said), "Software": "llm-math-sandbox"}
    replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=STYLE["dpi"], format="png", metadata=meta))
    return path.name
