"""Laplace fixes ReLU overconfidence (Kristiadi et al. 2020): far from the data MAP is sure, Laplace is not.

The claim, in one sentence: a ReLU net's MAP is arbitrarily confident far from the data, and a (last-layer)
Laplace approximation makes it less confident there than on the data while keeping it calibrated on the data.
The rule tests exactly that ordering: score every point by the Laplace predictive's confidence max_k p_k and ask
whether that score tells in-distribution test points from far-away points x = alpha_max u (AUROC of "in
distribution scores higher" >= `min_auroc`); the MAP premise (far-away confidence -> 1) and in-distribution
ECE/NLL no worse than MAP's are checked beside it. Theorem 2's limit and uniform bound (in float64, strictly
below 1) are measured and the bound must hold, but the limit is the same probit formula's own limit, so
agreement with it is reported, not judged (it cannot fail). The rule was fixed before any fresh seed ran.

A ReLU MLP is trained to a MAP (Adam on mean CE + wd/2 ||theta||^2, i.e. the summed NLL with a Gaussian prior of
precision N wd) on C Gaussian blobs in the plane. The L2 term sits in the loss on purpose: AdamW's decoupled decay is
not a Gaussian prior (Loshchilov & Hutter 2019), so a Laplace expansion at its fixed point expands no log posterior.
Along rays x = alpha u (unit u), a ReLU network is eventually linear: its features grow like
phi(alpha u) ~ alpha phi_inf, so the MAP logits grow linearly and the MAP confidence tends to 1.
A last-layer Laplace (KFAC; prior precision chosen by held-out NLL, as in the paper) makes the
logit variance grow like alpha^2 too, and with the probit approximation the confidence tends to (their Theorem 2, for
softmax per class) softmax_k(m_k / sqrt(pi/8 v_k)), m = phi_inf W, v_k = phi_inf^T Sigma_k phi_inf,
bounded uniformly by z_k <= B_k = ||w_k|| / sqrt(pi/8 lambda_min(Sigma)): strictly below 1, but only as
far below as B is small. The same AUROC under the evidence-maximizing prior precision is a measured control.
"No worse NLL" is on the paired per-point differences d_n = NLL_n(Laplace) - NLL_n(MAP): mean(d) <= 2 SE(d).
"""

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sandbox.experiments import protocol

from sandbox import bayes, losses, optim, plotting
from sandbox.errors import SandboxError
from sandbox.nn import plain_mlp

SOURCE = ("Kristiadi, Hein, Hennig 2020, 'Being Bayesian, Even Just a Bit, Fixes Overconfidence in ReLU "
          "Networks' (ICML, arXiv:2002.10118), Theorem 2 and Figure 1; probit: MacKay 1992; temperature "
          "scaling: Guo et al. 2017")


@dataclass
class Config:
    seeds: int = 5
    seed: int = 0  # the first seed
    num_classes: int = 4
    points_per_class: int = 100  # training; the same again held out for test and for temperature
    spread: float = 0.6  # per-coordinate std of a blob; centres on a circle of radius 2
    width: int = 50
    train_steps: int = 2000
    learning_rate: float = 0.01
    weight_decay: float = 5e-4  # L2 on all weights in the loss: the MAP's Gaussian prior (precision N wd)
    structure: str = "kron"  # last-layer Laplace: "kron" or "diag"
    num_rays: int = 200
    alpha_max: float = 1e4
    map_confidence_min: float = 0.99  # premise: MAP's mean far-away confidence at least this
    min_auroc: float = 0.9  # pass: Laplace's confidence tells test points from far-away ones, AUROC >= this
    calibration_tolerance: float = 0.01  # pass: Laplace ECE <= MAP ECE + this
    nll_standard_errors: float = 2.0  # pass: Laplace NLL - MAP NLL <= this many SEs of the paired difference

    def __post_init__(self):
        for name in ("points_per_class", "width", "train_steps", "num_rays"):
            if getattr(self, name) < 1:
                raise SandboxError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise SandboxError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.structure not in ("kron", "diag"):
            raise SandboxError(f"structure must be 'kron' or 'diag', got {self.structure!r}")
        protocol.check_seeds(self.seed, self.seeds)
        if not 0.5 <= self.min_auroc <= 1:
            raise SandboxError(f"min_auroc must lie in [0.5, 1], got {self.min_auroc}")
        for name in ("spread", "learning_rate", "alpha_max", "calibration_tolerance", "nll_standard_errors"):
            if not getattr(self, name) > 0:
                raise SandboxError(f"{name} must be positive, got {getattr(self, name)}")


def make_data(cfg: Config, key):
    """(x_NxD, y_N): blobs at radius 2 on a circle, equal class sizes."""
    angles = 2 * jnp.pi * jnp.arange(cfg.num_classes) / cfg.num_classes
    centres_Cx2 = 2.0 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], 1)
    y_N = jnp.repeat(jnp.arange(cfg.num_classes), cfg.points_per_class)
    return centres_Cx2[y_N] + cfg.spread * jax.random.normal(key, (y_N.size, 2)), y_N


def features(params, x_NxD):
    """phi(x) = the last hidden layer's ReLU output, with a constant 1 for the bias: [phi, 1]."""
    hidden = {k: v for k, v in params.items() if k != _last(params)}
    phi = jax.nn.relu(plain_mlp.apply(hidden, x_NxD, "relu"))
    return jnp.concatenate([phi, jnp.ones_like(phi[:, :1])], 1)


def _last(params):
    return f"layer_{len(params) - 1}"


def head(params):
    """W~ = [W; b]: the last layer as one (D + 1) x C matrix over [phi, 1]."""
    last = params[_last(params)]
    return jnp.concatenate([last["w"], last["b"][None]], 0)


@functools.partial(jax.jit, static_argnames=("steps", "width", "num_classes"))
def train(key, x, y, steps, width, num_classes, learning_rate, weight_decay):
    params = plain_mlp.init(key, [2, width, width, num_classes])

    def neg_log_posterior(p):  # / N: mean CE + (wd / 2) ||theta||^2
        l2 = sum(jnp.sum(leaf ** 2) for leaf in jax.tree_util.tree_leaves(p))
        return losses.mean_cross_entropy(plain_mlp.apply(p, x, "relu"), y) + 0.5 * weight_decay * l2

    return optim.minimize(neg_log_posterior, params, optax.adam(learning_rate), steps)[0]


def auroc(inside_N, outside_M) -> float:
    """P(score inside > score outside) + P(equal)/2 over all pairs (Mann-Whitney): 1 separates perfectly,
    0.5 is chance, 0 is the wrong way round."""
    a, b = np.asarray(inside_N, np.float64)[:, None], np.asarray(outside_M, np.float64)[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def limit_and_bound(post, phi_inf_RxD):
    """Theorem 2: the limit confidence per ray, and the uniform bound from lambda_min(Sigma) (the bound in
    float64: in float32 1 / (1 + e^-B...) rounds to exactly 1 for the B met here)."""
    w = post.params["w"]
    delta = post.prior_vector()
    m_RxC = phi_inf_RxD @ w
    v_RxC = post.curv.head_variance(delta, phi_inf_RxD)
    limit_R = jnp.max(jax.nn.softmax(m_RxC / jnp.sqrt(math.pi / 8 * v_RxC), -1), -1)
    (blk,) = post.curv.blocks if post.structure == "kron" else (None,)
    if blk is not None:
        lam_min = 1.0 / (jnp.max(blk.la_A) * jnp.max(blk.lb_B) + delta[0])
    else:
        lam_min = 1.0 / jnp.max(post.curv.h_P + delta)
    b_C = np.linalg.norm(np.asarray(w, np.float64), axis=0) / np.sqrt(math.pi / 8 * float(lam_min))
    # max_k softmax_k(z) <= e^{B_k} / (e^{B_k} + sum_{j != k} e^{-B_j}) = 1 / (1 + sum_{j != k} e^{-B_j - B_k})
    # and 1 - that = S_k / (1 + S_k), S_k = sum_{j != k} e^{-B_j - B_k}: how far below 1, without cancellation
    s_C = np.sum(np.exp(-b_C[:, None] - b_C[None, :]) * (1 - np.eye(b_C.size)), 1)
    return limit_R, float(np.max(1.0 / (1.0 + s_C))), float(np.min(s_C / (1.0 + s_C)))


def one_seed(cfg: Config, seed: int) -> dict:
    k_train, k_test, k_val, k_init, k_rays = jax.random.split(jax.random.key(seed), 5)
    x, y = make_data(cfg, k_train)
    x_test, y_test = make_data(cfg, k_test)
    x_val, y_val = make_data(cfg, k_val)
    params = train(k_init, x, y, cfg.train_steps, cfg.width, cfg.num_classes, cfg.learning_rate, cfg.weight_decay)
    post = bayes.laplace_head(features(params, x), y, head(params), structure=cfg.structure)
    post = bayes.tune_prior(post, features(params, x_val), y_val)
    evidence_post = post.optimize_prior_precision(steps=300, init=1.0)
    map_probs = lambda xs: jax.nn.softmax(plain_mlp.apply(params, xs, "relu"))  # noqa: E731
    lap_probs = lambda xs, q=post: bayes.head_predictive(q, features(params, xs))[0]  # noqa: E731
    angles = jax.random.uniform(k_rays, (cfg.num_rays,), maxval=2 * jnp.pi)
    u_Rx2 = jnp.stack([jnp.cos(angles), jnp.sin(angles)], 1)
    far = cfg.alpha_max * u_Rx2
    map_far = jnp.max(map_probs(far), -1)
    lap_far = jnp.max(lap_probs(far), -1)
    phi_far = features(params, far)
    phi_inf = (phi_far - features(params, 0 * far)).at[:, -1].set(0.0) / cfg.alpha_max  # bias feature: no growth
    limit_R, bound, bound_gap = limit_and_bound(post, phi_inf)
    temperature = bayes.fit_temperature(plain_mlp.apply(params, x_val, "relu"), y_val)
    logits_test = plain_mlp.apply(params, x_test, "relu")
    cal = {name: probs for name, probs in (("map", jax.nn.softmax(logits_test)),
                                          ("temperature", jax.nn.softmax(logits_test / temperature)),
                                          ("laplace", lap_probs(x_test)))}
    metrics = {f"{m}_{name}": float(fn(p, y_test)) for name, p in cal.items()
               for m, fn in (("ece", bayes.ece), ("nll", bayes.nll), ("brier", bayes.brier))}
    nll_diff, nll_diff_se = bayes.paired_difference(bayes.nll_per_point(cal["laplace"], y_test),
                                                    bayes.nll_per_point(cal["map"], y_test))
    lap_test = jnp.max(cal["laplace"], -1)
    row = {
        "seed": seed, "train_accuracy": float(jnp.mean(jnp.argmax(map_probs(x), -1) == y)),
        "test_accuracy": float(jnp.mean(jnp.argmax(cal["map"], -1) == y_test)),
        "prior_precision": float(post.prior_precision), "temperature": float(temperature),
        "evidence_prior_precision": float(evidence_post.prior_precision),
        "map_far_confidence_mean": float(jnp.mean(map_far)), "map_far_confidence_min": float(jnp.min(map_far)),
        "laplace_far_confidence_mean": float(jnp.mean(lap_far)),
        "laplace_far_confidence_max": float(jnp.max(lap_far)),
        "laplace_test_confidence_mean": float(jnp.mean(lap_test)),
        "auroc_laplace": auroc(lap_test, lap_far),
        "auroc_map": auroc(jnp.max(cal["map"], -1), map_far),
        "auroc_laplace_evidence_prior": auroc(jnp.max(lap_probs(x_test, evidence_post), -1),
                                              jnp.max(lap_probs(far, evidence_post), -1)),
        "theorem2_limit_max": float(jnp.max(limit_R)),
        "laplace_minus_limit_max": float(jnp.max(jnp.abs(lap_far - limit_R))),
        "theorem2_uniform_bound": bound, "one_minus_uniform_bound": bound_gap, **metrics,
        "nll_laplace_minus_map": nll_diff, "nll_laplace_minus_map_se": nll_diff_se,
    }
    row["checks"] = judge(row, cfg)
    row["_plot"] = (params, post, x, y, u_Rx2)
    return row


def judge(row: dict, cfg: Config) -> dict:
    """The rule on one seed's measurements: {check: passed}; the seed passes when every check does."""
    return {
        "map_tends_to_1": row["map_far_confidence_mean"] >= cfg.map_confidence_min,
        "laplace_less_confident_far_away": row["auroc_laplace"] >= cfg.min_auroc,
        "below_theorem2_bound": (row["one_minus_uniform_bound"] > 0
                                 and row["laplace_far_confidence_max"] <= row["theorem2_uniform_bound"] + 1e-6),
        "ece_no_worse": row["ece_laplace"] <= row["ece_map"] + cfg.calibration_tolerance,
        "nll_no_worse": row["nll_laplace_minus_map"] <= cfg.nll_standard_errors * row["nll_laplace_minus_map_se"],
    }


def why_not(rows: list) -> str:
    """Why the claim failed, from the measurements ("" if every seed separates)."""
    bad = [r for r in rows if not r["checks"]["laplace_less_confident_far_away"]]
    if not bad:
        return ""
    span = lambda key: f"{min(r[key] for r in bad):.3g}..{max(r[key] for r in bad):.3g}"  # noqa: E731
    return (f"at {len(bad)} of {len(rows)} seeds Laplace's confidence does not tell far-away points from test points "
            f"(AUROC {span('auroc_laplace')}; far-away mean confidence {span('laplace_far_confidence_mean')} vs "
            f"{span('laplace_test_confidence_mean')} on the test set): Theorem 2 keeps the far-away confidence "
            "below 1, not below the in-distribution one, which is itself high here; the "
            "held-out-NLL prior precision "
            f"({span('prior_precision')}) leaves the head's posterior so narrow that Theorem 2's bound sits "
            f"{span('one_minus_uniform_bound')} below 1; with the evidence-maximizing prior "
            f"({span('evidence_prior_precision')}) the AUROC is {span('auroc_laplace_evidence_prior')}")


def figures(cfg: Config, row: dict, folder: Path) -> list:
    """confidence_maps.png (MAP vs Laplace over the plane), confidence_vs_alpha.png, evidence.png."""
    params, post, x, y, u_Rx2 = row["_plot"]
    folder.mkdir(parents=True, exist_ok=True)
    g = jnp.linspace(-8, 8, 121)
    gx, gy = jnp.meshgrid(g, g)
    grid = jnp.stack([gx.ravel(), gy.ravel()], 1)
    lap = bayes.head_predictive(post, features(params, grid))[0]
    maps = {"MAP": jnp.max(jax.nn.softmax(plain_mlp.apply(params, grid, "relu")), -1),
            f"last-layer Laplace ({cfg.structure})": jnp.max(lap, -1)}
    fig, axes = plotting.figure(10, 4.2, ncols=2)
    for ax, (name, conf) in zip(axes, maps.items()):
        levels = np.linspace(1 / cfg.num_classes, 1, 11)
        mesh = ax.contourf(gx, gy, conf.reshape(gx.shape), levels=levels, cmap="viridis")
        ax.scatter(x[:, 0], x[:, 1], c=y, s=4, cmap="tab10", edgecolors="none")
        ax.set(title=f"{name}: confidence max_k p_k", xlabel="x1", ylabel="x2")
        fig.colorbar(mesh, ax=ax, label="confidence")
    written = [plotting.save(fig, folder / "confidence_maps.png")]
    alphas = jnp.logspace(-1, np.log10(cfg.alpha_max), 30)
    fig, ax = plotting.figure()
    for name, fn in (("MAP", lambda xs: jax.nn.softmax(plain_mlp.apply(params, xs, "relu"))),
                     ("Laplace", lambda xs: bayes.head_predictive(post, features(params, xs))[0])):
        conf = [float(jnp.mean(jnp.max(fn(a * u_Rx2), -1))) for a in alphas]
        ax.semilogx(alphas, conf, label=f"{name} (mean over {len(u_Rx2)} rays)")
    ax.axhline(row["theorem2_limit_max"], color="C3", linestyle="--", label="Theorem 2 limit (max over rays)")
    ax.set(xlabel="alpha (distance along the ray x = alpha u)", ylabel="confidence max_k p_k",
           title="far from the data: MAP -> 1, Laplace stays bounded")
    ax.legend(fontsize=8)
    written.append(plotting.save(fig, folder / "confidence_vs_alpha.png"))
    grid_d = jnp.logspace(-4, 3, 60)
    fig = bayes.evidence_figure(grid_d, bayes.evidence_curve(post, grid_d), row["evidence_prior_precision"],
                                title="last-layer evidence against the prior precision")
    fig.axes[0].axvline(post.prior_precision, color="C2", linestyle=":", label="chosen by held-out NLL")
    fig.axes[0].legend(fontsize=8)
    written.append(plotting.save(fig, folder / "evidence.png"))
    return written


def run(cfg: Config, out_dir: Path, progress: bool) -> dict:
    results, first = [], None
    for s in protocol.seed_list(cfg):
        r = one_seed(cfg, s)
        first = first or r
        if progress:
            print(f"seed {s}: far confidence MAP {r['map_far_confidence_mean']:.4f}, Laplace "
                  f"{r['laplace_far_confidence_mean']:.4f} (test {r['laplace_test_confidence_mean']:.4f}, AUROC "
                  f"{r['auroc_laplace']:.3f}); ECE MAP {r['ece_map']:.4f} Laplace {r['ece_laplace']:.4f}")
        measured = {k: v for k, v in r.items() if isinstance(v, float)}
        results.append(protocol.SeedResult(s, measured, all(r["checks"].values()), {"checks": r["checks"]}))
    written = figures(cfg, first, out_dir / "figures")
    rows = [{**res.measured, "checks": res.details["checks"]} for res in results]
    expected = protocol.Expected(
        prediction=("far from the data a ReLU net's MAP confidence tends to 1, while a last-layer Laplace "
                    "approximation is less confident there than on the data and no worse calibrated on it"),
        source=SOURCE,
        rule=(f"per seed: MAP's mean confidence at alpha = {cfg.alpha_max:g} along {cfg.num_rays} random rays >= "
              f"{cfg.map_confidence_min} (premise); the AUROC of Laplace's confidence max_k p_k separating the test "
              f"set (higher) from those far-away points >= {cfg.min_auroc}; Laplace's far-away confidence <= "
              f"Theorem 2's uniform bound (float64, < 1); ECE <= MAP's + {cfg.calibration_tolerance}; NLL - MAP's "
              f"<= {cfg.nll_standard_errors:g} SE of the paired per-point difference"),
        reason=("'fixes overconfidence' is an ordering: the model must be less sure where it has seen no data than "
                "where it has. AUROC measures that ordering without a threshold (0.5 is chance, and MAP's is ~0: "
                "surer far away); the paper's far-away Laplace confidences sit near 1/C against high in-distribution "
                f"ones, near-perfect separation, so {cfg.min_auroc} leaves room for noise. Theorem 2's limit is not "
                "judged: the probit predictive agrees with its own limit by construction"))
    return protocol.write(out_dir, "laplace_overconfidence", cfg, expected, results, written,
                          not_reproduced=why_not(rows))
