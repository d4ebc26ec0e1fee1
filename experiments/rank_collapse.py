"""Rank collapse (Dong, Cordonnier & Loukas 2021): pure self-attention stacks lose rank doubly exponentially with depth.

Token representations X (n x d) pass through `depth` randomly initialized layers (several seeds,
vmapped, float64). After each layer we measure the relative residual from the best rank-1
approximation (Eckart-Young: r(X) = sqrt(sum_{i>=2} s_i^2 / sum_i s_i^2), s the singular values)
and the token-uniformity residual ||X - 1 mean(X)^T||_F / ||X||_F that Dong et al. bound. Variants:
- attention:       X <- SA(X)                       (a pure self-attention stack)
- attention_mlp:   X <- MLP(SA(X))                  (MLPs, no skip connections)
- skip:            X <- X + SA(X)                   (skip connections, branches unscaled)
- skip_scaled:     X <- X + SA(X) / sqrt(depth)     (skip, branches scaled as Noci et al. 2022)
- skip_scaled_mlp: X <- X + SA(X)/sqrt(depth); X <- X + MLP(X)/sqrt(depth)
SA is the sandbox's multi-head attention (bidirectional), weights N(0, 1/d); the MLP is GELU with
He-scaled weights.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import enable_x64

from sandbox import plotting
from sandbox.errors import SandboxError
from sandbox.nn.attention import multi_head_attention
from sandbox.nn.mlp import gelu_mlp
from sandbox.train import records

VARIANTS = ("attention", "attention_mlp", "skip", "skip_scaled", "skip_scaled_mlp")
SOURCE = ("Dong, Cordonnier & Loukas 2021, 'Attention is not all you need: pure attention loses rank doubly "
          "exponentially with depth' (ICML, arXiv:2103.03404): without skip connections the token representations "
          "converge to rank 1 doubly exponentially; skip connections prevent it. Noci et al. 2022, 'Signal "
          "propagation in transformers: theoretical perspectives and the role of rank collapse' (NeurIPS, "
          "arXiv:2206.03126): with skip connections, scaling the residual branches by 1/sqrt(depth) keeps the rank")


@dataclass
class Config:
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    depth: int = 24
    tokens: int = 32  # n
    width: int = 64  # d
    heads: int = 4
    seeds: int = 5
    collapse_rate: float = 1.0  # pass: the pure stack's fitted log-residual slope <= -collapse_rate per layer
    keep_fraction: float = 0.5  # pass: scaled-skip residual at the last layer >= keep_fraction x the input's
    floor: float = 1e-12  # residuals below this are float64 round-off: excluded from the fit
    seed: int = 0

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise SandboxError(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
        for name in ("depth", "tokens", "width", "heads", "seeds"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be positive, got {getattr(self, name)}")
        if self.width % self.heads:
            raise SandboxError(f"width={self.width} must be divisible by heads={self.heads}")
        if self.collapse_rate <= 0 or not 0 < self.keep_fraction <= 1:
            raise SandboxError("collapse_rate must be > 0 and keep_fraction in (0, 1]")


def rank1_residual(x_NxD):
    """sqrt(sum_{i>=2} s_i^2 / sum_i s_i^2): relative distance to the best rank-1 matrix."""
    s = jnp.linalg.svd(x_NxD, compute_uv=False)
    return jnp.sqrt(jnp.sum(s[1:] ** 2) / jnp.sum(s**2))


def uniformity_residual(x_NxD):
    """||X - 1 mean^T||_F / ||X||_F: distance to identical rows (the rank-1 matrices attention converges to)."""
    return jnp.linalg.norm(x_NxD - x_NxD.mean(axis=0)) / jnp.linalg.norm(x_NxD)


def residuals(key, variant: int, cfg: Config):
    """(rank1_(depth+1), uniform_(depth+1)) along one random stack of VARIANTS[variant], input included.
    The variant is an array index (`lax.switch`), so one compiled program serves them all."""
    n, d = cfg.tokens, cfg.width
    x_key, layers_key = jax.random.split(key)
    scale = 1.0 / np.sqrt(cfg.depth)

    def layer(x_NxD, k):
        ks = jax.random.split(k, 6)
        attn = {name: {"w": jax.random.normal(kk, (d, d), x_NxD.dtype) / np.sqrt(d)} for name, kk in zip("qkvo", ks)}
        mlp = {"up": {"w": jax.random.normal(ks[4], (d, 4 * d), x_NxD.dtype) * np.sqrt(2 / d)},
               "down": {"w": jax.random.normal(ks[5], (4 * d, d), x_NxD.dtype) * np.sqrt(1 / (4 * d))}}
        a_NxD = multi_head_attention(attn, x_NxD[None], cfg.heads)[0]
        branches = (
            lambda: a_NxD,  # attention
            lambda: gelu_mlp(mlp, a_NxD),  # attention_mlp
            lambda: x_NxD + a_NxD,  # skip
            lambda: x_NxD + scale * a_NxD,  # skip_scaled
            lambda: (y := x_NxD + scale * a_NxD) + scale * gelu_mlp(mlp, y),  # skip_scaled_mlp
        )
        x_NxD = jax.lax.switch(variant, branches)
        return x_NxD, (rank1_residual(x_NxD), uniformity_residual(x_NxD))

    x0_NxD = jax.random.normal(x_key, (n, d), jnp.float64)
    _, (rank1, uniform) = jax.lax.scan(layer, x0_NxD, jax.random.split(layers_key, cfg.depth))
    return (jnp.concatenate([rank1_residual(x0_NxD)[None], rank1]),
            jnp.concatenate([uniformity_residual(x0_NxD)[None], uniform]))


def fitted_slope(res_L: np.ndarray, floor: float) -> float:
    """Least-squares slope of log r against depth over the layers before r first drops below `floor`."""
    above = np.flatnonzero(res_L < floor)
    stop = int(above[0]) if len(above) else len(res_L)
    if stop < 2:
        return float("-inf")
    return float(np.polyfit(np.arange(stop), np.log(res_L[:stop]), 1)[0])


def figure(measured: dict, cfg: Config):
    fig, axes = plotting.figure(11, 4, ncols=2)
    depth = np.arange(cfg.depth + 1)
    for k, (ax, key, title) in enumerate(zip(axes, ("rank1", "uniform"), ("best rank-1", "identical rows"))):
        for i, v in enumerate(cfg.variants):
            res_SxL = np.maximum(np.array(measured[v][key]), cfg.floor / 10)
            ax.semilogy(depth, np.exp(np.log(res_SxL).mean(0)), color=f"C{i}", label=v)
            ax.fill_between(depth, res_SxL.min(0), res_SxL.max(0), color=f"C{i}", alpha=0.2)
        ax.axhline(cfg.floor, color="k", ls=":", lw=1, label="float64 floor" if k == 0 else None)
        ax.set(xlabel="layer", ylabel="relative residual", title=f"residual from {title} ({cfg.seeds} seeds)")
    axes[0].legend(fontsize=7)
    return fig


def run(cfg: Config, out_dir: Path, progress: bool = True) -> dict:
    expected = {
        "claim": (f"pure self-attention: log residual from rank 1 falls at least linearly with depth, fitted slope "
                  f"<= -{cfg.collapse_rate} nats/layer (residual x e^-{cfg.collapse_rate} or faster per layer; "
                  f"doubly exponential shows as steepening steps) for every seed, fitted over the layers above "
                  f"{cfg.floor:g}; skip connections with 1/sqrt(depth)-scaled branches: residual after {cfg.depth} "
                  f"layers >= {cfg.keep_fraction} x the input's for every seed. attention_mlp and unscaled skip are "
                  "measured and reported, not judged"),
        "source": SOURCE,
    }
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)
    measured = {}
    with enable_x64():
        stacks = jax.jit(jax.vmap(lambda k, v: residuals(k, v, cfg), in_axes=(0, None)))
        for v in cfg.variants:
            rank1, uniform = (np.asarray(r) for r in stacks(keys, jnp.int32(VARIANTS.index(v))))
            slopes = [fitted_slope(r, cfg.floor) for r in rank1]
            last = rank1[:, -1] / rank1[:, 0]
            # per-layer change of log r, seed mean, while above the floor: steepening steps = doubly exponential
            above = rank1[:, 1:] > cfg.floor
            counts = above.sum(axis=0)
            steps = np.where(above, np.diff(np.log(rank1), axis=1), 0.0).sum(axis=0) / np.maximum(counts, 1)
            measured[v] = {"rank1": rank1.tolist(), "uniform": uniform.tolist(), "fitted_slope": slopes,
                           "log_step_per_layer": [float(x) if c else None for x, c in zip(steps, counts)],
                           "final_over_initial": last.tolist(),
                           "aggregate": {"slope_mean": float(np.mean(slopes)), "slope_std": float(np.std(slopes)),
                                         "slope_min": float(np.min(slopes)), "slope_max": float(np.max(slopes)),
                                         "final_over_initial_mean": float(last.mean()),
                                         "final_over_initial_min": float(last.min()),
                                         "final_over_initial_max": float(last.max())}}
            if progress:
                print(f"{v:16s} slope {np.mean(slopes):8.3f} nats/layer, final/initial residual {last.mean():.3g}")
    checks = {}
    if "attention" in measured:
        checks["attention_collapses"] = all(s <= -cfg.collapse_rate for s in measured["attention"]["fitted_slope"])
    for v in ("skip_scaled", "skip_scaled_mlp"):
        if v in measured:
            checks[f"{v}_keeps_rank"] = all(f >= cfg.keep_fraction for f in measured[v]["final_over_initial"])
    plotting.save(figure(measured, cfg), out_dir / "residual_vs_depth.png")
    summary = {"measured": measured, "expected": expected, "checks": checks, "setup": dataclasses.asdict(cfg),
               "verdict": "pass" if checks and all(checks.values()) else "fail"}
    records.write_json(out_dir / "summary.json", summary)
    return summary
