"""Figures for compression and weight spectra (matplotlib, Agg, PNG)."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sandbox.compress import spectra  # noqa: E402


def plot_tradeoff(rows: list[dict], metric: str, base: float, path: Path, title: str) -> None:
    """`metric` against bits per weight, one line per method; the uncompressed model as a dashed line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["bits_per_weight"], r[metric]) for r in rows if r["method"] == method)
        ax.plot(*zip(*pts), "o-", label=method, ms=4)
    ax.axhline(base, color="k", ls="--", lw=1, label="uncompressed")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bits per weight (32 = dense float32; SVD/pruning: 32 x kept fraction)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_singular_values(weights: dict, path: Path, title: str) -> None:
    """s_i / s_1 against i / K for every layer, log scale: how fast each spectrum decays."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cmap = plt.get_cmap("viridis")
    for j, (name, w) in enumerate(weights.items()):
        s = np.sqrt(spectra.esd(w))[::-1]
        ax.plot(np.arange(1, len(s) + 1) / len(s), s / s[0], color=cmap(j / max(len(weights) - 1, 1)), lw=1,
                label=name if len(weights) <= 12 else None)
    ax.set_yscale("log")
    ax.set_xlabel("i / K (rank fraction)")
    ax.set_ylabel("s_i / s_1")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(weights) <= 12:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_esd_grid(weights: dict, table: dict, path: Path, title: str) -> None:
    """Log-log ESD histogram of W^T W per layer with the fitted power law from x_min (and the MP edge)."""
    n = len(weights)
    cols = min(6, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.0 * rows), squeeze=False)
    for ax, (name, w) in zip(axes.ravel(), weights.items()):
        evals = spectra.esd(w)
        evals = evals[evals > 0]
        bins = np.logspace(np.log10(evals[0]), np.log10(evals[-1]), 30)
        density, edges = np.histogram(evals, bins=bins, density=True)
        ax.loglog(np.sqrt(edges[1:] * edges[:-1]), np.where(density > 0, density, np.nan), ".", ms=3)
        info = table[name]
        if np.isfinite(info["alpha"]):
            x = np.logspace(np.log10(info["xmin"]), np.log10(evals[-1]), 20)
            tail = info["n_tail"] / len(evals)  # the fitted density is conditional on the tail
            pdf = tail * (info["alpha"] - 1) / info["xmin"] * (x / info["xmin"]) ** (-info["alpha"])
            ax.loglog(x, pdf, "r-", lw=1)
        ax.axvline(info["mp_edge"], color="gray", ls=":", lw=1)
        ax.set_title(f"{name}\nalpha={info['alpha']:.2f}", fontsize=6)
        ax.tick_params(labelsize=5)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"{title}: ESD of W^T W, power-law fit (red), MP edge (dotted)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_alpha(table: dict, path: Path, title: str) -> None:
    """Power-law alpha per layer, with WeightWatcher's 2..6 'well-trained' band shaded."""
    names = list(table)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.18 * len(names)), 4.0))
    ax.bar(range(len(names)), [table[k]["alpha"] for k in names], color="tab:blue")
    ax.axhspan(2, 6, color="tab:green", alpha=0.1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("alpha")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
