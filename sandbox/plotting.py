"""One place for figures: matplotlib's object API (no pyplot state, no backend switch), one style.

`figure()` returns a `Figure` and its axes, which render in a notebook as they are; `save` writes a
PNG atomically (a reader never sees half a file) and returns its file name.
"""

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


def save(fig: Figure, path: Path) -> str:
    """Write `fig` as a PNG at `path` (atomically); returns the file name."""
    path = Path(path)
    replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=STYLE["dpi"], format="png"))
    return path.name
