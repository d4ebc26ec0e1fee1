"""The loss curve of a run: train and val loss against steps, mean and spread over seeds."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss(rows: list[dict], path: Path, entropy_rate: float | None = None) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        pts = [(r["step"], r[key], r.get(f"{key}_std", 0.0)) for r in rows if key in r]
        if pts:
            steps, mean, std = (list(c) for c in zip(*pts))
            ax.plot(steps, mean, label=label, marker="o" if key == "val_loss" else None, ms=3)
            if any(std):
                lo = [m - s for m, s in zip(mean, std)]
                hi = [m + s for m, s in zip(mean, std)]
                ax.fill_between(steps, lo, hi, alpha=0.25)
    if entropy_rate is not None:
        ax.axhline(entropy_rate, color="k", ls="--", lw=1, label="source entropy rate")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
