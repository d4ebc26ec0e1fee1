"""Hessian outliers (Sagun et al.; Papyan): a softmax classifier on C clusters has ~C outliers, carried by the GGN.

A one-hidden-layer MLP with softmax cross-entropy is trained briefly (Adam, full batch) on a
mixture of C isotropic Gaussians with orthogonal means sep * e_c. Its Hessian spectrum is then a
bulk near zero plus a few outliers, which Papyan traces to the generalized Gauss-Newton
G = J^T (diag p - p p^T) J and, within it, to the class means of the per-sample gradients.

Where the bulk ends is measured, not tuned: G splits exactly into a class-mean part and a
within-class part, G = G_means + G_within, both PSD (`class_means`). The within-class part alone
is the bulk; its top eigenvalue lambda_max(G_within) (Lanczos on G - D^T D) is the bulk edge, and
the outliers are the eigenvalues of H (and of G) above it: by Weyl's inequality an eigenvalue of G
above the edge exists only because of the class means. The logit gradient p - onehot(y) sums to
zero over the classes, so the class means span C - 1 large directions and a smaller C-th: the
pass band is C - 1 or C. The GGN must also carry the outliers: its top eigenvalues close to the
Hessian's, its top eigenvectors spanning the Hessian's outlier subspace. Each seed draws new data,
weights and Lanczos starts; a seed passes when every C passes, the experiment when every seed does.

The claim, in one sentence: after training, the Hessian of a C-class softmax classifier is a bulk plus C - 1
(or C) outliers that come from the class means of the Gauss-Newton term. Two checks were added before the
fresh seeds ran, because the count and the GGN's closeness are nearly automatic once the training loss is
small: a gap rule (the outliers stand apart: lambda_{C-1} / lambda_{C+1} exceeds every two-step ratio
lambda_i / lambda_{i+2} of the bulk eigenvalues measured beside them, i = C+1 .. 2C-2) and Papyan's mechanism
directly (the top C - 1 eigenvectors of H span >= `min_overlap` of the top C - 1 directions of the class-mean
part D^T D). The regime is after `train_steps` Adam steps; at 3 steps (early training) the counts reach 2C
and the GGN is 30-63% off, and that run is reported as such, not hidden by the default.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sandbox.experiments import protocol

from sandbox import curvature, losses, optim, plotting
from sandbox.errors import SandboxError
from sandbox.nn import plain_mlp

SOURCE = ("Sagun, Evci, Guney, Dauphin, Bottou 2017, 'Empirical Analysis of the Hessian of "
          "Over-Parametrized Neural Networks' (arXiv:1706.04454): a bulk near zero and about C outliers "
          "(one per cluster); Papyan 2019, 'Measurements of Three-Level Hierarchical Structure in the "
          "Outliers in the Spectrum of Deepnet Hessians' (ICML, arXiv:1901.08244) and Papyan 2020, "
          "'Traces of Class/Cross-Class Structure Pervade Deep Learning Spectra' (JMLR): the outliers "
          "come from the Gauss-Newton term's class-mean structure")


@dataclass
class Config:
    num_classes: list[int] = field(default_factory=lambda: [4, 8, 12])  # C, one experiment each
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
    ggn_tolerance: float = 0.15  # pass: the GGN's top eigenvalues within this relative error of H's
    min_overlap: float = 0.9  # pass: the GGN's top eigenvectors span this much of H's outlier subspace
    seed: int = 0  # the first seed
    seeds: int = 3  # independent seeds (data, initial weights, Lanczos start), one after another

    def __post_init__(self):
        protocol.check_seeds(self.seed, self.seeds)
        if not self.num_classes or min(self.num_classes) < 2:
            raise SandboxError(f"num_classes must list values >= 2, got {self.num_classes}")
        if self.input_dim < max(self.num_classes):
            raise SandboxError(f"input_dim={self.input_dim} must be >= the largest number of classes "
                               f"{max(self.num_classes)} (the class means are orthogonal)")
        for name in ("points_per_class", "width", "train_steps", "lanczos_steps", "slq_steps", "slq_probes"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 < self.min_overlap <= 1:
            raise SandboxError(f"min_overlap must lie in (0, 1], got {self.min_overlap}")
        for name in ("separation", "noise", "learning_rate", "ggn_tolerance"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be positive, got {getattr(self, name)}")
        plain_mlp.check_activation(self.activation)


def make_data(cfg: Config, num_classes: int, key: jax.Array):
    """(x_NxD, labels_N): x = separation * e_y + noise * N(0, I), equal class sizes."""
    labels_N = jnp.repeat(jnp.arange(num_classes), cfg.points_per_class)
    means_CxD = cfg.separation * jnp.eye(num_classes, cfg.input_dim)
    x_NxD = means_CxD[labels_N] + cfg.noise * jax.random.normal(key, (labels_N.size, cfg.input_dim))
    return x_NxD, labels_N


@dataclasses.dataclass(frozen=True)
class _MinusLowRank:
    """(A - D^T D) v for an operator A (its rule and operands) and a Q x N matrix D."""

    rule: Callable

    def __call__(self, operands, v_N):
        inner, d_QxN = operands
        return self.rule(inner, v_N) - d_QxN.T @ (d_QxN @ v_N)


def class_means(model_fn, params, batch, num_classes: int, layout) -> jax.Array:
    """D (C^2 x N): rows sqrt(pi_c) delta_{c,c'}, so that D^T D is the class-mean part of the GGN.

    With A_i = diag p_i - p_i p_i^T = sum_c' p_ic' (e_c' - p_i)(e_c' - p_i)^T, the GGN is
    G = (1/n) sum_i sum_c' g_ic' g_ic'^T, g_ic' = sqrt(p_ic') J_i^T (e_c' - p_i); its class means
    delta_{c,c'} = mean_{i in class c} g_ic' split it exactly as between + within:
    G = sum_c pi_c sum_c' delta_cc' delta_cc'^T + G_within (Papyan 2019). Each delta is one VJP.
    """
    logits_NxC, vjp = jax.vjp(lambda p: model_fn(p, batch), params)
    p_NxC = jax.nn.softmax(logits_NxC)
    in_class_NxC = jax.nn.one_hot(batch[1], num_classes, dtype=p_NxC.dtype)
    count_C = in_class_NxC.sum(0)
    # cotangent of (c, c'): rows i of class c get sqrt(p_ic') (e_c' - p_i) / n_c, scaled by sqrt(pi_c)
    diff_NxCxC = jnp.eye(num_classes, dtype=p_NxC.dtype)[None] - p_NxC[:, None, :]  # [i, c', :]
    g_NxCxC = jnp.sqrt(p_NxC)[:, :, None] * diff_NxCxC
    weight_NxC = in_class_NxC * jnp.sqrt(count_C / p_NxC.shape[0]) / count_C  # [i, c]
    cot_CxCxNxC = jnp.einsum("ic,ikj->ckij", weight_NxC, g_NxCxC)
    rows = jax.vmap(lambda u: layout.ravel(vjp(u)[0]))(cot_CxCxNxC.reshape(-1, *logits_NxC.shape))
    return rows


def count_above(eigs_K: np.ndarray, edge: float) -> int:
    """How many of the top eigenvalues exceed the bulk edge."""
    return int(np.sum(np.asarray(eigs_K) > edge))


def measurement(cfg: Config, num_classes: int):
    """The jitted per-seed program seed -> (final loss, accuracy, top-2C eigenpairs of H and of G, the
    within-class edge, the class-mean spectrum, H's SLQ density): data, training, class means, Lanczos, SLQ.

    Per seed, not vmapped over the seeds: vmapped, every eigh of a Lanczos tridiagonal becomes a batched
    LAPACK call, and jaxlib's batched syevd fans its batch out into the XLA intra-op thread pool it is
    running on and blocks until the pieces finish; two such calls running at once (the Lanczos of H, G
    and G_within are independent) can hold every worker of a small pool, waiting for pieces no worker is
    left to run (a deadlock seen on 2 cores). Every eigh now goes through `curvature.eigh`, which maps
    over a batch one matrix at a time; the seeds still run one after another, each result read back."""
    k = 2 * num_classes

    def measure(seed):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), num_classes)  # one stream per (seed, C)
        k_data, k_init, k_lanczos, k_slq = jax.random.split(key, 4)
        batch = make_data(cfg, num_classes, k_data)
        model_fn = lambda p, b: plain_mlp.apply(p, b[0], cfg.activation)  # noqa: E731
        output_loss = lambda z, b: losses.mean_cross_entropy(z, b[1])  # noqa: E731
        loss_fn = lambda p, b: output_loss(model_fn(p, b), b)  # noqa: E731
        opt = optim.adam(cfg.learning_rate)

        params = plain_mlp.init(k_init, [cfg.input_dim, cfg.width, num_classes])
        params, losses_T = optim.minimize(lambda p: loss_fn(p, batch), params, opt, cfg.train_steps)
        accuracy = jnp.mean(jnp.argmax(model_fn(params, batch), -1) == batch[1])
        hess = curvature.hessian(loss_fn, params, batch)
        gn = curvature.ggn(model_fn, output_loss, params, batch)
        d_QxN = class_means(model_fn, params, batch, num_classes, gn.layout)
        within = curvature.LinearOperator(_MinusLowRank(gn.rule), (gn.operands, d_QxN), gn.layout)
        h_pairs = curvature.top_eigenpairs(hess, k, key=k_lanczos, num_steps=cfg.lanczos_steps)
        g_pairs = curvature.top_eigenpairs(gn, k, key=k_lanczos, num_steps=cfg.lanczos_steps)
        edge = curvature.top_eigenpairs(within, 1, key=k_lanczos, num_steps=cfg.lanczos_steps)[0][0]
        d_vals, d_vecs = curvature.eigh(d_QxN @ d_QxN.T)  # ascending; D^T D's nonzero spectrum
        between = d_vals[::-1][:k]
        # the top C - 1 directions of D^T D: v = D^T u / sqrt(lambda) for D D^T's top eigenpairs (u, lambda)
        top_u = d_vecs[:, ::-1][:, :num_classes - 1]
        means_NxK = d_QxN.T @ top_u / jnp.sqrt(d_vals[::-1][:num_classes - 1])
        mean_overlap = jnp.sum((h_pairs[1][:num_classes - 1] @ means_NxK) ** 2) / (num_classes - 1)
        density = curvature.spectral_density(hess, key=k_slq, num_steps=cfg.slq_steps,
                                             num_probes=cfg.slq_probes)
        return losses_T[-1], accuracy, h_pairs, g_pairs, edge, between, mean_overlap, density

    return jax.jit(measure)


def one_mixture(cfg: Config, num_classes: int, seeds: list[int]) -> list[dict]:
    """Train on a C-cluster mixture and measure, one seed after another (one compiled program)."""
    measure = measurement(cfg, num_classes)
    return [judge(cfg, num_classes, seed, jax.tree.map(np.asarray, measure(jnp.int32(seed)))) for seed in seeds]


def gap_ratios(h_vals, num_classes: int) -> tuple[float, float]:
    """(lambda_{C-1} / lambda_{C+1}, the largest two-step ratio lambda_i / lambda_{i+2} of the bulk beside it,
    i = C+1 .. 2C-2; 1 where there is none), from the top 2C eigenvalues (1-indexed)."""
    c = num_classes
    gap = float(h_vals[c - 2] / h_vals[c])
    bulk = [float(h_vals[i] / h_vals[i + 2]) for i in range(c, 2 * c - 2)]
    return gap, max(bulk, default=1.0)


def judge(cfg: Config, num_classes: int, seed: int, measured) -> dict:
    """Count the outliers above the bulk edge and check that the GGN carries them."""
    k = 2 * num_classes
    loss, accuracy, (h_vals, h_vecs), (g_vals, g_vecs), edge, between, mean_overlap, density = measured
    h_vals, g_vals = np.asarray(h_vals, np.float64), np.asarray(g_vals, np.float64)
    edge = float(edge)
    if not (np.isfinite(h_vals).all() and np.isfinite(g_vals).all() and np.isfinite(edge)):
        raise SandboxError(f"C={num_classes}, seed {seed}: the eigenvalues are not finite; lower learning_rate")
    count_h, count_g = count_above(h_vals, edge), count_above(g_vals, edge)
    # how much of the Hessian's outlier subspace the GGN's top eigenvectors span (1 = all of it)
    top = max(count_h, 1)
    overlap = float(np.sum((h_vecs[:top] @ g_vecs[:top].T) ** 2) / top)
    rel_err = float(np.max(np.abs(g_vals[:top] - h_vals[:top]) / h_vals[:top]))
    about_c = lambda count: num_classes - 1 <= count <= num_classes  # noqa: E731
    gap, bulk_spacing = gap_ratios(h_vals, num_classes)
    checks = {"count_hessian": about_c(count_h), "count_ggn": about_c(count_g),
              "ggn_eigenvalues": rel_err <= cfg.ggn_tolerance, "ggn_subspace": overlap >= cfg.min_overlap,
              "gap": gap > bulk_spacing, "class_mean_subspace": float(mean_overlap) >= cfg.min_overlap}
    return {
        "num_classes": num_classes, "num_params": int(h_vecs.shape[1]), "train_loss": float(loss),
        "train_accuracy": float(accuracy), "bulk_edge": edge, "outliers_hessian": count_h, "outliers_ggn": count_g,
        "separation_ratio": float(h_vals[count_h - 1] / h_vals[count_h]) if 0 < count_h < k else None,
        "top_hessian": h_vals.tolist(), "top_ggn": g_vals.tolist(),
        "top_class_means": np.asarray(between, np.float64).tolist(),
        "ggn_max_relative_error_on_outliers": rel_err, "outlier_subspace_overlap": overlap,
        "gap_ratio": gap, "bulk_two_step_ratio": bulk_spacing, "class_mean_overlap": float(mean_overlap),
        "checks": {name: bool(v) for name, v in checks.items()}, "passed": bool(all(checks.values())),
        "_density": tuple(np.asarray(a) for a in density),
    }


def figures(rows: dict, seeds: list[int], folder: Path) -> list[str]:
    """density.png: SLQ density of the first seed (log scale) with its outliers and bulk edge marked;
    spectra.png: the top eigenvalues of every seed against the bulk edge; counts.png: outliers per seed and C."""
    classes = sorted({c for c, _ in rows})
    fig, axes = plotting.figure(5.5 * len(classes), 4, ncols=len(classes))
    for ax, c in zip(np.atleast_1d(axes), classes):
        row = rows[c, seeds[0]]
        grid, density = row["_density"]
        ax.semilogy(grid, np.maximum(density, 1e-8), color="C0", label="SLQ density of H")
        for i, lam in enumerate(row["top_hessian"][:row["outliers_hessian"]]):
            ax.axvline(lam, color="C3", linewidth=0.8, label="outliers (Lanczos)" if i == 0 else None)
        ax.axvline(row["bulk_edge"], color="k", linestyle="--", label="bulk edge: lambda_max(G_within)")
        ax.set(title=f"C = {c}, seed {seeds[0]}: {row['outliers_hessian']} outliers", xlabel="eigenvalue",
               ylabel="density", ylim=(1e-6, None))
        ax.legend(fontsize=7)
    names = [plotting.save(fig, folder / "density.png")]
    fig, axes = plotting.figure(5.5 * len(classes), 4, ncols=len(classes))
    for ax, c in zip(np.atleast_1d(axes), classes):
        for j, seed in enumerate(seeds):
            row = rows[c, seed]
            idx = np.arange(1, len(row["top_hessian"]) + 1)
            ax.semilogy(idx, np.asarray(row["top_hessian"]) / row["bulk_edge"], "o-", color=f"C{j}",
                        markersize=3, linewidth=0.8, label=f"seed {seed}: {row['outliers_hessian']} outliers")
        ax.axhline(1.0, color="k", linestyle="--", label="bulk edge")
        ax.axvline(c + 0.5, color="gray", linestyle=":", label="index C")
        ax.set(title=f"C = {c}: top Hessian eigenvalues / bulk edge", xlabel="index", ylabel="eigenvalue / edge")
        ax.legend(fontsize=7)
    names.append(plotting.save(fig, folder / "spectra.png"))
    fig, ax = plotting.figure(5, 3.5)
    for j, seed in enumerate(seeds):
        shift = 0.9 * (j - (len(seeds) - 1) / 2) / len(seeds)  # side by side, so equal counts stay visible
        x = np.asarray(classes) + shift
        ax.plot(x - 0.07, [rows[c, seed]["outliers_hessian"] for c in classes], "o", color=f"C{j}", markersize=4,
                label=f"seed {seed}")
        ax.plot(x + 0.07, [rows[c, seed]["outliers_ggn"] for c in classes], "x", color=f"C{j}", markersize=4)
    ax.fill_between(classes, [c - 1 for c in classes], classes, color="gray", alpha=0.2, label="C - 1 .. C")
    ax.set(xlabel="number of classes C", ylabel="outliers (o Hessian, x GGN)", title="outlier counts per seed")
    ax.legend(fontsize=7)
    return names + [plotting.save(fig, folder / "counts.png")]


def run(cfg: Config, out_dir: Path, progress: bool) -> dict:
    seeds = protocol.seed_list(cfg)
    rows = {}
    for c in cfg.num_classes:
        for seed, row in zip(seeds, one_mixture(cfg, c, seeds)):
            rows[c, seed] = r = row
            if progress:
                print(f"seed {seed}, C={c}: {r['outliers_hessian']} Hessian outliers, {r['outliers_ggn']} GGN "
                      f"(bulk edge {r['bulk_edge']:.3g})")
    names = figures(rows, seeds, out_dir / "figures")
    results = []
    for seed in seeds:
        per_c = [{k: v for k, v in rows[c, seed].items() if not k.startswith("_")} for c in cfg.num_classes]
        measured = {}
        for r in per_c:
            for key in ("outliers_hessian", "outliers_ggn", "separation_ratio", "ggn_max_relative_error_on_outliers",
                        "outlier_subspace_overlap", "gap_ratio", "bulk_two_step_ratio", "class_mean_overlap",
                        "train_loss"):
                measured[f"C={r['num_classes']}: {key}"] = r[key]
        results.append(protocol.SeedResult(seed, measured, all(r["passed"] for r in per_c), {"per_C": per_c}))
    expected = protocol.Expected(
        prediction=("the Hessian has a bulk near zero and about C outliers, C - 1 or C for a softmax classifier "
                    "(its logit gradients sum to zero over the C classes), carried by the GGN's class-mean part"),
        source=SOURCE,
        rule=(f"per seed and C, after {cfg.train_steps} Adam steps: the number of eigenvalues of H, and of the GGN G, "
              "above the bulk edge lambda_max(G_within) is C - 1 or C; the GGN's top eigenvalues lie within "
              f"{cfg.ggn_tolerance:.0%} of the Hessian's on them and its top eigenvectors span >= "
              f"{cfg.min_overlap:.0%} of the Hessian's outlier subspace; gap: lambda_{{C-1}} / lambda_{{C+1}} above "
              "every two-step ratio lambda_i / lambda_{i+2} of the bulk (i = C+1 .. 2C-2); H's top C - 1 "
              f"eigenvectors span >= {cfg.min_overlap:.0%} of the top C - 1 directions of the class-mean part D^T D"),
        reason=("G = G_class-means + G_within, both PSD (Papyan's split of the GGN by class). An eigenvalue of G "
                "above lambda_max(G_within) can only come from the class means (Weyl: lambda_k(G) <= "
                "lambda_k(G_means) + lambda_max(G_within)), so the edge is where the within-class bulk ends; it "
                "is measured, not a ratio tuned to a seed; the gap is judged against the bulk's own spacing, and "
                "the class-mean overlap tests the mechanism itself, not only that G is close to H"))
    bad = [(seed, r) for seed in seeds for r in results[seeds.index(seed)].details["per_C"] if not r["passed"]]
    why = "; ".join(f"seed {seed}, C={r['num_classes']}: fails {[k for k, v in r['checks'].items() if not v]} "
                    f"(train loss {r['train_loss']:.3g}, {r['outliers_hessian']} outliers, GGN error "
                    f"{r['ggn_max_relative_error_on_outliers']:.2f}, class-mean overlap {r['class_mean_overlap']:.2f}, "
                    f"gap {r['gap_ratio']:.2f} vs bulk {r['bulk_two_step_ratio']:.2f})" for seed, r in bad)
    return protocol.write(out_dir, "hessian_outliers", cfg, expected, results, names, not_reproduced=why)
