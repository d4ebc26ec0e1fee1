"""Figures of the analyses, each returned with a caption in words (what it shows, the math behind it).

Every function writes one PNG through `sandbox.plotting` and returns `(file name, caption)`.
"""

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from sandbox import plotting
from sandbox.curvature.kinds import KINDS
from sandbox.train.figures import plot_loss


def top_eigenvalues(result: dict, path: Path) -> tuple[str, str]:
    kind = KINDS[result["operator"]].title
    vals = result["top_eigenvalues"]
    fig, ax = plotting.figure()
    ax.plot(range(1, len(vals) + 1), vals, "o-", label=f"lambda_i ({result.get('eval_set', 'given batch')})")
    ax.set(xlabel="index i (largest first)", ylabel="eigenvalue lambda_i (nats/token per unit^2)",
           title=f"top {len(vals)} {kind} eigenvalues")
    ax.legend(fontsize=8)
    caption = (f"The {len(vals)} largest eigenvalues lambda_1 >= lambda_2 >= ... of the {kind} of the mean "
               f"cross-entropy, by Lanczos ({_where(result)}). lambda_1 is the sharpness of the loss on this "
               "batch: the loss rises by about lambda_1 t^2 / 2 along its eigenvector for a step of length t. "
               "Training's sharpness curve is measured on a fixed train batch instead (the curvature the "
               "optimizer steps on), another function, so its last value need not equal lambda_1 here.")
    return plotting.save(fig, path), caption


def density(result: dict, path: Path) -> tuple[str, str]:
    kind = KINDS[result["operator"]].title
    fig, ax = plotting.figure()
    _density(ax, result["density"], "SLQ density (all parameters)")
    for v in result["top_eigenvalues"]:
        ax.axvline(v, color="k", lw=0.5, alpha=0.4)
    ax.legend(handles=[*ax.get_legend_handles_labels()[0],
                       Line2D([], [], color="k", lw=0.5, alpha=0.4, label="top eigenvalues (Lanczos)")], fontsize=8)
    ax.set(title=f"{kind} spectral density, all parameters")
    caption = (f"Spectral density of the {kind}, rho(lambda) = (1/N) sum_i delta(lambda - lambda_i), estimated by "
               f"stochastic Lanczos quadrature and smoothed by a Gaussian kernel of width sigma = "
               f"{_sigma(result['density'])} (1% of the spectrum's range; log scale), with the top eigenvalues as "
               f"grey lines ({_where(result)}). A bulk near 0 and a few outliers is the usual shape of a trained LM.")
    return plotting.save(fig, path), caption


def block_densities(result: dict, path: Path) -> tuple[str, str]:
    """Small multiples: one panel per block, each on its own eigenvalue axis (their ranges differ by decades)."""
    kind = KINDS[result["operator"]].title
    blocks = result["blocks"]
    ncols = min(4, len(blocks))
    nrows = -(-len(blocks) // ncols)
    fig, axes = plotting.figure(3.0 * ncols, 2.2 * nrows, nrows, ncols, sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (name, block) in zip(axes.flat, blocks.items()):
        _density(ax, block["density"], None)
        ax.set_title(f"{name} ({block['dim']:,} params, {block['method']})", fontsize=8)
        ax.set(xlabel="", ylabel="")
    for ax in list(axes.flat)[len(blocks):]:
        ax.set_visible(False)
    fig.supxlabel("eigenvalue lambda (nats/token per unit^2)", fontsize=9)
    fig.supylabel("density rho(lambda)", fontsize=9)
    fig.suptitle(f"{kind} spectral density of each parameter block (diagonal block H[b, b])", fontsize=10)
    caption = (f"Spectral density of each diagonal block H[b, b] of the {kind} (the curvature restricted to one "
               "block's parameters: embeddings, each attention, each MLP, each norm), one panel each on its own "
               "eigenvalue axis; by SLQ (lanczos) or from the exact block (dense), each smoothed by a Gaussian kernel "
               "of 1% of its own range. Blocks of different kinds have different spectra: the heterogeneity that "
               "motivates per-block step sizes.")
    return plotting.save(fig, path), caption


def sharpness(rows: list[dict], path: Path, optimizer: str = "") -> tuple[str, str]:
    """lambda_max against steps (rows of metrics.jsonl) with the gradient-descent threshold 2/eta_t."""
    pts = [(r["step"], r["sharpness"], r.get("sharpness_std", 0.0)) for r in rows if "sharpness" in r]
    lrs = [(r["step"], 2 / r["learning_rate"]) for r in rows if r.get("learning_rate")]
    fig, ax = plotting.figure()
    if pts:
        steps, mean, std = (np.array(c) for c in zip(*pts))
        ax.plot(steps, mean, "o-", label="sharpness lambda_max(H), fixed train batch")
        if np.any(std):
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25, label="± std over seeds")
    if lrs:
        ax.plot(*zip(*lrs), "r--", lw=1, label="2 / eta_t (eta_t: the scheduled learning rate)")
    ax.set_yscale("log")
    ax.set(xlabel="training step", ylabel="eigenvalue (nats/token per unit^2)",
           title="sharpness during training")
    ax.legend(fontsize=8)
    caption = ("Sharpness lambda_max(H), the top Hessian eigenvalue of the train loss on one fixed train batch "
               "(the loss the optimizer steps on; the final spectrum is on the eval set, so its lambda_1 differs), "
               "against training steps; the dashed line is 2/eta_t, the edge of stability of gradient descent "
               "(along a direction of curvature above 2/eta, a gradient step of size eta overshoots and the loss "
               "grows)."
               + (f" This run uses {optimizer}, whose steps are preconditioned: its raw sharpness may sit above "
                  "2/eta; the threshold that binds it is on the preconditioned Hessian P^-1/2 H P^-1/2."
                  if optimizer not in ("", "sgd") else ""))
    return plotting.save(fig, path), caption


def loss(rows: list[dict], path: Path, eval_set: str) -> tuple[str, str]:
    """Train and val loss against steps."""
    name = plot_loss(rows, path, eval_set=eval_set)
    caption = ("Mean next-token cross-entropy -(1/T) sum_t log p(x_{t+1} | x_<=t) in nats per token against steps: "
               f"on each step's own train batch, and on the fixed eval set {eval_set} (the same windows at every "
               "evaluation, so the val curve moves only because the model does).")
    return name, caption


def _density(ax, density: dict, label: str | None) -> None:
    values = np.maximum(np.asarray(density["values"]), 1e-12)  # log scale needs > 0
    ax.semilogy(density["grid"], values, lw=0.8, label=label)
    ax.set(xlabel="eigenvalue lambda (nats/token per unit^2)", ylabel="density rho(lambda) (per unit lambda)",
           ylim=(1e-6, None))


def _sigma(density: dict) -> str:
    return f"{density['sigma']:.3g}" if "sigma" in density else "(not recorded)"


def _where(result: dict) -> str:
    return f"measured on eval set {result['eval_set']}" if "eval_set" in result else "on the given batch"


def curvature(result: dict, out_dir: Path) -> dict:
    """{file name: caption} of every curvature figure `result` has data for, written into `out_dir`."""
    out_dir = Path(out_dir)
    written = dict([top_eigenvalues(result, out_dir / "top_eigenvalues.png")])
    if "density" in result:
        written.update([density(result, out_dir / "density.png")])
        if "blocks" in result:
            written.update([block_densities(result, out_dir / "blocks_density.png")])
    return written
