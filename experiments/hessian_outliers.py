"""Hessian outliers (Sagun et al.; Papyan): a softmax classifier on C Gaussian clusters has ~C outliers, carried by the GGN.

A one-hidden-layer MLP with softmax cross-entropy is trained briefly (Adam, full batch) on a
mixture of C isotropic Gaussians with orthogonal means sep * e_c. Its Hessian spectrum is then a
bulk near zero plus a few outliers. Among the top 2C Lanczos eigenvalues, the bulk is the tail
whose neighbours lie within a factor `bulk_ratio` (1.3) of each other, and the outliers are the
eigenvalues above its first larger gap. We compare them with the generalized Gauss-Newton
G = J^T (diag p - p p^T) J, to which Papyan traces the outliers (through the class means of the
logit gradients). The logit gradient p - onehot(y) sums to zero over the classes, so each sample
gives G only C - 1 directions: here the spectrum shows C - 1 large outliers and a smaller C-th,
so the pass band is C - 1 or C.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import common_mlp
from sandbox import curvature, losses, optim
from sandbox.errors import SandboxError
from sandbox.train import records

SOURCE = ("Sagun, Evci, Guney, Dauphin, Bottou 2017, 'Empirical Analysis of the Hessian of "
          "Over-Parametrized Neural Networks' (arXiv:1706.04454): a bulk near zero and about C outliers "
          "(one per cluster); Papyan 2019, 'Measurements of Three-Level Hierarchical Structure in the "
          "Outliers in the Spectrum of Deepnet Hessians' (ICML, arXiv:1901.08244) and Papyan 2020, "
          "'Traces of Class/Cross-Class Structure Pervade Deep Learning Spectra' (JMLR): the outliers "
          "come from the Gauss-Newton term's class-mean structure")


@dataclass
class Config:
    num_classes: list[int] = field(default_factory=lambda: [4, 8])  # C, one experiment each
    input_dim: int = 20  # >= max C (orthogonal means)
    points_per_class: int = 200
    separation: float = 2.0  # ||mean_c||
    noise: float = 0.3  # per-coordinate std within a cluster
    width: int = 64
    activation: str = "relu"
    train_steps: int = 30
    learning_rate: float = 0.01  # Adam
    lanczos_steps: int = 100
    slq_steps: int = 80
    slq_probes: int = 4
    bulk_ratio: float = 1.3  # neighbouring bulk eigenvalues are within this factor of each other
    ggn_tolerance: float = 0.15  # pass: the GGN's top eigenvalues within this relative error of H's
    seed: int = 0

    def __post_init__(self):
        if not self.num_classes or min(self.num_classes) < 2:
            raise SandboxError(f"num_classes must list values >= 2, got {self.num_classes}")
        if self.input_dim < max(self.num_classes):
            raise SandboxError(f"input_dim={self.input_dim} must be >= the largest number of classes "
                               f"{max(self.num_classes)} (the class means are orthogonal)")
        for name in ("points_per_class", "width", "train_steps", "lanczos_steps", "slq_steps", "slq_probes"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.bulk_ratio <= 1:
            raise SandboxError(f"bulk_ratio must be > 1, got {self.bulk_ratio}")
        for name in ("separation", "noise", "learning_rate", "ggn_tolerance"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be positive, got {getattr(self, name)}")
        common_mlp.check_activation(self.activation)


def make_data(cfg: Config, num_classes: int, key: jax.Array):
    """(x_NxD, labels_N): x = separation * e_y + noise * N(0, I), equal class sizes."""
    labels_N = jnp.repeat(jnp.arange(num_classes), cfg.points_per_class)
    means_CxD = cfg.separation * jnp.eye(num_classes, cfg.input_dim)
    x_NxD = means_CxD[labels_N] + cfg.noise * jax.random.normal(key, (labels_N.size, cfg.input_dim))
    return x_NxD, labels_N


def count_outliers(eigs_K: np.ndarray, bulk_ratio: float) -> tuple[int, float]:
    """(k, gap): the bulk is the longest tail of the top eigenvalues (descending) whose neighbours
    lie within a factor `bulk_ratio` of each other; the k eigenvalues above it are the outliers,
    set apart from the bulk's top by the factor `gap`."""
    eigs_K = np.maximum(np.asarray(eigs_K, dtype=np.float64), 1e-30)
    ratios = eigs_K[:-1] / eigs_K[1:]
    k = len(ratios)
    while k > 0 and ratios[k - 1] < bulk_ratio:
        k -= 1
    return k, float(ratios[k - 1]) if k else 1.0


def one_mixture(cfg: Config, num_classes: int) -> dict:
    """Train on a C-cluster mixture; top-2C eigenpairs of H and G, and H's SLQ density."""
    k = 2 * num_classes

    def measure():  # one jitted program: data, training, Lanczos for H and G, SLQ
        k_data, k_init, k_lanczos, k_slq = jax.random.split(jax.random.PRNGKey(cfg.seed + num_classes), 4)
        batch = make_data(cfg, num_classes, k_data)
        model_fn = lambda p, b: common_mlp.apply(p, b[0], cfg.activation)  # noqa: E731
        output_loss = lambda z, b: losses.mean_cross_entropy(z, b[1])  # noqa: E731
        loss_fn = lambda p, b: output_loss(model_fn(p, b), b)  # noqa: E731
        opt = optim.adam(cfg.learning_rate)

        def step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        params = common_mlp.init(k_init, [cfg.input_dim, cfg.width, num_classes])
        (params, _), losses_T = jax.lax.scan(step, (params, opt.init(params)), None, length=cfg.train_steps)
        accuracy = jnp.mean(jnp.argmax(model_fn(params, batch), -1) == batch[1])
        hess = curvature.hessian(loss_fn, params, batch)
        gn = curvature.ggn(model_fn, output_loss, params, batch)
        h_pairs = curvature.top_eigenpairs(hess, k, key=k_lanczos, num_steps=cfg.lanczos_steps)
        g_pairs = curvature.top_eigenpairs(gn, k, key=k_lanczos, num_steps=cfg.lanczos_steps)
        density = curvature.spectral_density(hess, key=k_slq, num_steps=cfg.slq_steps,
                                             num_probes=cfg.slq_probes)
        return losses_T[-1], accuracy, hess.dim, h_pairs, g_pairs, density

    loss, accuracy, dim, (h_vals, h_vecs), (g_vals, g_vecs), density = jax.jit(measure)()
    h_vals, g_vals = np.asarray(h_vals, np.float64), np.asarray(g_vals, np.float64)
    if not (np.isfinite(h_vals).all() and np.isfinite(g_vals).all()):
        raise SandboxError(f"C={num_classes}: the eigenvalues are not finite; lower learning_rate")
    count_h, gap_h = count_outliers(h_vals, cfg.bulk_ratio)
    count_g, gap_g = count_outliers(g_vals, cfg.bulk_ratio)
    # how much of the Hessian's outlier subspace the GGN's top eigenvectors span (1 = all of it)
    top = max(count_h, 1)
    overlap = float(jnp.sum((h_vecs[:top] @ g_vecs[:top].T) ** 2) / top)
    rel_err = float(np.max(np.abs(g_vals[:top] - h_vals[:top]) / h_vals[:top]))
    about_c = lambda count: num_classes - 1 <= count <= num_classes  # noqa: E731
    ok = about_c(count_h) and about_c(count_g) and rel_err <= cfg.ggn_tolerance and overlap >= 0.9
    return {
        "num_classes": num_classes, "num_params": int(dim), "train_loss": float(loss),
        "train_accuracy": float(accuracy), "outliers_hessian": count_h, "gap_ratio_hessian": gap_h,
        "outliers_ggn": count_g, "gap_ratio_ggn": gap_g,
        "top_hessian": h_vals.tolist(), "top_ggn": g_vals.tolist(),
        "ggn_max_relative_error_on_outliers": rel_err, "outlier_subspace_overlap": overlap,
        "verdict": "pass" if ok else "fail",
        "_density": tuple(np.asarray(a) for a in density),
    }


def figures(rows: list[dict], folder: Path) -> None:
    """density.png: SLQ density (log scale) with the outliers marked; hessian_vs_ggn.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        grid, density = row["_density"]
        ax.semilogy(grid, np.maximum(density, 1e-8), color="C0", label="SLQ density of H")
        for i, lam in enumerate(row["top_hessian"][:row["outliers_hessian"]]):
            ax.axvline(lam, color="C3", linewidth=0.8, label="outliers (Lanczos)" if i == 0 else None)
        ax.set(title=f"C = {row['num_classes']}: {row['outliers_hessian']} outliers", xlabel="eigenvalue",
               ylabel="density", ylim=(1e-6, None))
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "density.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        idx = np.arange(1, len(row["top_hessian"]) + 1)
        ax.semilogy(idx, row["top_hessian"], "o", label="Hessian")
        ax.semilogy(idx, row["top_ggn"], "x", label="GGN")
        ax.axvline(row["outliers_hessian"] + 0.5, color="gray", linestyle="--", label="outlier / bulk")
        ax.set(title=f"C = {row['num_classes']}: top eigenvalues", xlabel="index", ylabel="eigenvalue")
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "hessian_vs_ggn.png", dpi=120)
    plt.close(fig)


def run(cfg: Config, out_dir: Path, progress: bool) -> dict:
    rows = []
    for c in cfg.num_classes:
        rows.append(one_mixture(cfg, c))
        if progress:
            print(f"C={c}: {rows[-1]['outliers_hessian']} Hessian outliers, {rows[-1]['outliers_ggn']} GGN")
    figures(rows, out_dir / "figures")
    measured = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    summary = {
        "measured": measured,
        "expected": {
            "claim": ("the Hessian has a bulk near zero and about C outliers, C - 1 or C for a softmax "
                      "classifier (its logit gradients sum to zero over the C classes); the GGN has the "
                      f"same outliers (its top eigenvalues within {cfg.ggn_tolerance:.0%} of the Hessian's, "
                      "its top eigenvectors spanning >= 90% of the Hessian's outlier subspace)"),
            "source": SOURCE,
        },
        "setup": dataclasses.asdict(cfg),
        "verdict": "pass" if all(r["verdict"] == "pass" for r in rows) else "fail",
    }
    records.write_json(out_dir / "summary.json", summary)
    return summary
