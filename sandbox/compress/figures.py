"""Figures for compression and weight spectra (through `sandbox.plotting`: PNG, labelled axes, legends)."""

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, NullLocator

from sandbox import plotting

SYMLOG_LINEAR = 1e-5  # nats/token: below this the loss changes are float32 rounding of the eval loss


def plot_tradeoff(rows: list[dict], metric: str, base: float, path: Path, title: str, unit: str = "") -> str:
    """`metric` against bits per weight, one line per method; the uncompressed model as a dashed line."""
    fig, ax = plotting.figure(6.4, 4.2)
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["bits_per_weight"], r[metric]) for r in rows if r["method"] == method)
        ax.plot(*zip(*pts), "o-", label=method, ms=4)
    ax.axhline(base, color="k", ls="--", lw=1, label=f"uncompressed ({base:.4g})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bits per weight (32 = dense float32; SVD/pruning: 32 x kept fraction)")
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return plotting.save(fig, path)


def plot_singular_values(esds: dict, path: Path, title: str) -> str:
    """s_i / s_1 against i / K for every layer (from its ESD, ascending s_i^2), log scale: how fast each decays."""
    fig, ax = plotting.figure(6.4, 4.2)
    cmap = colormaps["viridis"]
    for j, (name, evals) in enumerate(esds.items()):
        s = np.sqrt(evals)[::-1]
        ax.plot(np.arange(1, len(s) + 1) / len(s), s / s[0], color=cmap(j / max(len(esds) - 1, 1)), lw=1,
                label=name if len(esds) <= 12 else None)
    ax.set_yscale("log")
    ax.set_xlabel("i / K (rank index over the layer's rank K)")
    ax.set_ylabel("s_i / s_1 (relative singular value)")
    ax.set_title(title, fontsize=9)
    if len(esds) <= 12:
        ax.legend(fontsize=6, ncol=2)
    return plotting.save(fig, path)


def plot_esd_grid(esds: dict, table: dict, path: Path, title: str) -> str:
    """Log-log ESD histogram of W^T W per layer (ascending eigenvalues) with the power law from x_min, MP edge."""
    n = len(esds)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plotting.figure(3.0 * cols, 2.6 * rows + 0.8, rows, cols)
    axes = np.array(axes, dtype=object).reshape(rows, cols)
    for ax, (name, evals) in zip(axes.ravel(), esds.items()):
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
        ax.set_title(f"{name}  (alpha = {info['alpha']:.2f})", fontsize=7)
        ax.tick_params(labelsize=6)
        # few major labels (a small panel's labels must not overlap) and no minor ticks: 36 panels' minor ticks
        # were 90% of this figure's time (constrained layout measures every tick, 20 s on 2 cores)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, numticks=4))
            axis.set_minor_locator(NullLocator())
        ax.set_xlabel("eigenvalue of W^T W", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [Line2D([], [], marker=".", ls="", label="ESD histogram"),
               Line2D([], [], color="r", label="power law p ~ x^-alpha above x_min"),
               Line2D([], [], color="gray", ls=":", label="Marchenko-Pastur bulk edge")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7)
    fig.suptitle(f"ESD of W^T W per layer, power-law tail fitted ({title})", fontsize=9)
    fig.get_layout_engine().set(rect=(0, 0.06, 1, 0.94))
    return plotting.save(fig, path)


def plot_alpha(table: dict, path: Path, title: str) -> str:
    """Power-law alpha per layer, with WeightWatcher's 2..6 'well-trained' band shaded."""
    names = list(table)
    fig, ax = plotting.figure(max(6.4, 0.22 * len(names)), 4.2)
    ax.bar(range(len(names)), [table[k]["alpha"] for k in names], color="tab:blue")
    ax.axhspan(2, 6, color="tab:green", alpha=0.1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("power-law exponent alpha (dimensionless)")
    ax.set_xlabel("layer")
    ax.legend(handles=[Patch(color="tab:blue", label="alpha of the layer's ESD tail"),
                       Patch(color="tab:green", alpha=0.2, label="2 <= alpha <= 6: 'well trained' (WeightWatcher)")],
              fontsize=7)
    ax.set_title(title, fontsize=9)
    return plotting.save(fig, path)


def plot_predicted(rows: list[dict], agreement: dict, path: Path, title: str) -> str:
    """Measured against predicted loss change, one colour per method, the full-Hessian and the diagonal
    (OBD) model side by side, on symmetric-log axes, with y = x: where the points leave the line the
    quadratic model has broken (large changes) or the diagonal misses the coupling between weights.
    Both axes are logarithmic beyond +-SYMLOG_LINEAR and linear inside (changes of either sign)."""
    fig, axes = plotting.figure(10.0, 4.4, 1, 2, sharex=True, sharey=True)
    values = [r[k] for r in rows for k in ("delta_loss", "predicted_delta_loss", "predicted_delta_loss_diag")]
    values = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    colors = colormaps["tab10"]
    models = (("predicted_delta_loss", "full Hessian: g^T d + d^T H d / 2", ""),
              ("predicted_delta_loss_diag", "diagonal (OBD): g^T d + sum H_ii d_i^2 / 2", "_diag"))
    for ax, (key, name, suffix) in zip(axes, models):
        for j, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
            pts = [(r[key], r["delta_loss"]) for r in rows if r["method"] == method]
            ax.plot(*zip(*pts), "o", ms=4, color=colors(j % 10), label=method, alpha=0.8)
        ax.plot([min(values), max(values)], [min(values), max(values)], "k--", lw=1, label="y = x")
        ax.set_xscale("symlog", linthresh=SYMLOG_LINEAR)
        ax.set_yscale("symlog", linthresh=SYMLOG_LINEAR)
        ax.set_xlabel(f"predicted loss change (nats/token), {name}", fontsize=8)
        ax.set_title(f"Spearman {agreement['spearman' + suffix]:.3f}; median relative error "
                     f"{agreement['small_median_rel_error' + suffix]:.2g} on {agreement['small_rows']} changes "
                     f"<= {agreement['small_threshold']:g}", fontsize=8)
    axes[0].set_ylabel("measured loss change (nats/token)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return plotting.save(fig, path)


def plot_hessian_beside_adam(views: dict, path: Path, title: str) -> str:
    """Left: eigenvalues of a layer's H = 2 X^T X beside its diagonal and Adam's input marginal (each over
    its largest, descending). Right: principal angles between H's top-k eigenvectors and the k axes Adam
    (or diag H) ranks first: 0 degrees = the same directions, 90 = orthogonal."""
    fig, (left, right) = plotting.figure(10.0, 4.0, 1, 2)
    for key, label in (("eigenvalues", "eigenvalues of H = 2 X^T X (GPTQ)"),
                       ("diagonal", "diag H (OBD, act-order)"), ("adam", "Adam: sum_j P_ij^2 per input i")):
        left.plot(np.arange(1, len(views[key]) + 1), views[key], label=label, lw=1.2)
    left.set_yscale("log")
    left.set_xlabel("index i (descending)")
    left.set_ylabel("value / largest (dimensionless)")
    left.legend(fontsize=7)
    left.set_title(f"Spearman(diag H, Adam) = {views['spearman_diag_adam']:.3f}", fontsize=8)
    k = np.arange(1, views["k"] + 1)
    right.plot(k, views["angles_adam"], "o-", label="H's top-k eigenvectors vs Adam's top-k axes")
    right.plot(k, views["angles_diagonal"], "s--", label="H's top-k eigenvectors vs diag H's top-k axes")
    right.set_ylim(0, 90)
    right.set_xlabel("principal angle number (ascending)")
    right.set_ylabel("principal angle (degrees)")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return plotting.save(fig, path)
