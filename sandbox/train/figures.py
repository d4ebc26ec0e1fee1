"""The loss curve of a run: train and val loss against steps, mean and spread (std) over seeds."""

from pathlib import Path

from sandbox import plotting


def plot_loss(rows: list[dict], path: Path, entropy_rate: float | None = None, eval_set: str | None = None) -> str:
    """Write the loss figure at `path` (train loss on each step's batch, val loss on the eval set); its file name."""
    fig, ax = plotting.figure(6, 4)
    val_label = f"val (eval set {eval_set})" if eval_set else "val"
    for key, label in (("train_loss", "train (the step's batch)"), ("val_loss", val_label)):
        pts = [(r["step"], r[key], r.get(f"{key}_std", 0.0)) for r in rows if key in r]
        if pts:
            steps, mean, std = (list(c) for c in zip(*pts))
            ax.plot(steps, mean, label=label, marker="o" if key == "val_loss" else None, ms=3)
            if any(std):
                ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                alpha=0.25, label=f"{label}: mean ± std over seeds")
    if entropy_rate is not None:
        ax.axhline(entropy_rate, color="k", ls="--", lw=1, label="source entropy rate")
    ax.set(xlabel="training step", ylabel="cross-entropy (nats/token)", title="loss during training")
    ax.legend(fontsize=8)
    return plotting.save(fig, path)
