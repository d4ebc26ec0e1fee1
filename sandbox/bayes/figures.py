"""Figures of the Bayes toolkit: reliability diagrams and the evidence against the prior precision."""

import itertools

import numpy as np

from sandbox import plotting
from sandbox.bayes.calibration import reliability

STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # (line style, marker) per curve, in order


def reliability_diagram(predictions: dict, labels_N, num_bins: int = 15, title: str = "reliability diagram"):
    """Accuracy against confidence per equal-width bin, one line per {name: probs_NxC}; the diagonal is calibrated."""
    fig, ax = plotting.figure(5.0, 4.5)
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
    for (name, probs), (line, marker) in zip(predictions.items(), itertools.cycle(STYLES)):
        r = reliability(probs, labels_N, num_bins)
        keep = np.asarray(r.count_B) > 0
        # curves that coincide (Laplace near the MAP) stay apart: each its own dash, marker, hollow after the first
        ax.plot(np.asarray(r.confidence_B)[keep], np.asarray(r.accuracy_B)[keep], linestyle=line, marker=marker,
                markersize=5, markerfacecolor="none" if line != "-" else None, linewidth=1.5, label=name)
    ax.set(xlabel="confidence (mean max probability in bin)", ylabel="accuracy in bin", title=title,
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    return fig


def evidence_figure(grid_G, lml_G, best=None, title: str = "Laplace evidence"):
    """log p(D | delta) against the prior precision delta (log axis), the maximizer marked."""
    fig, ax = plotting.figure()
    ax.semilogx(np.asarray(grid_G), np.asarray(lml_G), label="log marginal likelihood")
    if best is not None:
        ax.axvline(float(best), color="C3", linestyle="--", label=f"optimized delta = {float(best):.3g}")
    ax.set(xlabel="prior precision delta", ylabel="log p(D | delta) (nats)", title=title)
    ax.legend(fontsize=8)
    return fig
