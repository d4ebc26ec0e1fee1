"""Block heterogeneity (Zhang et al. 2024): a transformer's block-wise Hessian spectra differ far more than an MLP's.

At initialization, the Hessian of each parameter block (the transformer's embeddings, each
attention and each MLP block; each layer of the MLP) is restricted to that block,
H_bb = P_b H P_b, and its spectral density estimated by stochastic Lanczos quadrature
(`curvature.spectral_density` of `op.block(name)`). For two blocks, both densities are smoothed on
one grid spanning both and compared by the Jensen-Shannon distance (sqrt of the JS divergence,
base 2, in [0, 1]). "Why Transformers Need Adam" finds the average pairwise distance much larger
for transformers than for MLPs/CNNs, and ties Adam's edge over SGD to that heterogeneity.
Each seed draws new data and initial weights for both models; the seeds are vmapped.

The claim, in one sentence: a transformer's block Hessian spectra differ from each other far more than an
MLP's do (and that is why it needs Adam). The rule, per seed, fixed before the fresh seeds ran: the mean
pairwise JS distance of the transformer exceeds the MLP's by more than 3 pooled standard errors (the block
pairs as samples) and by more than the probe noise (the mean JS distance between two SLQ probes' densities
of the same block, pooled over both models: what two estimates of one spectrum already differ by), at
initialization and again after `train_steps` full-batch Adam steps on each model's own batch. Beside it, not
judged: the spread of the blocks' spectral radii (max/min; the scale that the paper's Adam argument is about,
which JS ignores) and the mean JS distance of the densities each rescaled by its block's spectral radius.
"""

import itertools
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sandbox.experiments import protocol

from sandbox import curvature, losses, optim, plotting
from sandbox.errors import SandboxError
from sandbox.nn import plain_mlp, transformer
from sandbox.nn.config import ModelConfig
from sandbox.text import markov

SOURCE = ("Zhang, Chen, Li, Ding, Sun, Ye, Luo 2024, 'Why Transformers Need Adam: A Hessian "
          "Perspective' (NeurIPS, arXiv:2402.16788): block-wise Hessian spectra are heterogeneous in "
          "transformers (large JS distance between blocks) and homogeneous in MLPs/CNNs")


@dataclass
class Config:
    vocab_size: int = 256  # the tiny transformer (configs/model/tiny.yaml) on a Markov byte source
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    seq_len: int = 64
    batch_size: int = 8
    mlp_input_dim: int = 64  # the MLP: a classifier on a Gaussian mixture, of similar size
    mlp_width: int = 192
    mlp_depth: int = 4  # hidden layers
    mlp_classes: int = 10
    mlp_points: int = 512
    slq_steps: int = 40
    slq_probes: int = 2  # per seed; the seeds add probes
    grid_points: int = 512
    sigma_ratio: float = 0.02  # kernel width / the two blocks' joint spectral range
    train_steps: int = 100  # full-batch Adam steps on each model's batch; spectra at init and after them
    learning_rate: float = 1e-3
    standard_errors: float = 3.0  # pass: the difference beyond this many pooled SEs (and beyond the probe noise)
    seed: int = 0  # the first seed
    seeds: int = 3  # independent seeds (data, initial weights, probes), vmapped

    def __post_init__(self):
        protocol.check_seeds(self.seed, self.seeds)
        for name in ("batch_size", "mlp_input_dim", "mlp_width", "mlp_depth", "mlp_classes", "mlp_points",
                     "slq_steps", "slq_probes", "grid_points", "train_steps"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.slq_probes < 2:
            raise SandboxError(f"slq_probes must be >= 2 (the probe noise compares two), got {self.slq_probes}")
        if not 0 < self.sigma_ratio < 1:
            raise SandboxError(f"sigma_ratio must lie in (0, 1), got {self.sigma_ratio}")
        self.model()  # validates the transformer's sizes

    def model(self) -> ModelConfig:
        return ModelConfig(vocab_size=self.vocab_size, seq_len=self.seq_len, d_model=self.d_model,
                           n_layers=self.n_layers, n_heads=self.n_heads, d_ff=self.d_ff)


def transformer_problem(cfg: Config, seed: int):
    """(loss_fn, params, batch, block names): next-token loss at init on windows of a Markov source."""
    model_cfg = cfg.model()
    source = markov.MarkovConfig(order=1, alphabet=cfg.vocab_size, concentration=0.5,
                                 length=cfg.batch_size * (cfg.seq_len + 1), seed=seed)
    tokens_BxLp1 = jnp.asarray(markov.sample(source).reshape(cfg.batch_size, cfg.seq_len + 1))
    batch = {"inputs": tokens_BxLp1[:, :-1], "targets": tokens_BxLp1[:, 1:]}
    params = transformer.init(jax.random.PRNGKey(seed), model_cfg)

    def loss_fn(p, b):
        return losses.mean_cross_entropy(transformer.apply(p, b["inputs"], model_cfg), b["targets"])

    blocks = ["embed"] + [f"block_{i}/{part}" for i in range(cfg.n_layers) for part in ("attn", "mlp")]
    return loss_fn, params, batch, blocks


def mlp_problem(cfg: Config, seed: int):
    """(loss_fn, params, batch, block names): softmax cross-entropy at init on a Gaussian mixture."""
    k_means, k_x, k_y, k_init = jax.random.split(jax.random.PRNGKey(seed + 1), 4)
    means_CxD = jax.random.normal(k_means, (cfg.mlp_classes, cfg.mlp_input_dim))
    labels_N = jax.random.randint(k_y, (cfg.mlp_points,), 0, cfg.mlp_classes)
    x_NxD = means_CxD[labels_N] + jax.random.normal(k_x, (cfg.mlp_points, cfg.mlp_input_dim))
    sizes = [cfg.mlp_input_dim] + [cfg.mlp_width] * cfg.mlp_depth + [cfg.mlp_classes]
    params = plain_mlp.init(k_init, sizes)

    def loss_fn(p, b):
        return losses.mean_cross_entropy(plain_mlp.apply(p, b[0], "relu"), b[1])

    return loss_fn, params, (x_NxD, labels_N), [f"layer_{i}" for i in range(len(sizes) - 1)]


def trained(cfg: Config, loss_fn, params_S, batch_S):
    """Each seed's params after `train_steps` full-batch Adam steps on its own batch (vmapped over seeds)."""
    def one(params, batch):
        return optim.minimize(lambda p: loss_fn(p, batch), params, optax.adam(cfg.learning_rate), cfg.train_steps)[0]

    return jax.jit(jax.vmap(one))(params_S, batch_S)


def block_spectra(cfg: Config, problem, seeds: list[int]) -> tuple[dict, int]:
    """({"init"|"trained": per seed {block: (nodes PxM, weights PxM)}}, number of parameters): SLQ on each
    diagonal block H_bb, all blocks, seeds and both stages in one jitted program (vmapped over seeds x stages,
    blocks mapped in turn, probes vmapped).

    H_bb's spectrum is that of M_b H M_b (M_b = diag(mask of block b), `op.scaled`) on the block's
    coordinates: Lanczos started from a probe supported on the block never leaves them.
    """
    problems = [problem(cfg, seed) for seed in seeds]
    loss_fn, _, _, blocks = problems[0]
    params_S, batch_S = jax.tree.map(lambda *x: jnp.stack(x), *[(p[1], p[2]) for p in problems])
    both = lambda a, b: jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)  # noqa: E731
    params_S, batch_S = both(params_S, trained(cfg, loss_fn, params_S, batch_S)), both(batch_S, batch_S)
    layout = curvature.Layout.of(problems[0][1])
    masks_BxN = np.zeros((len(blocks), layout.dim), np.float32)
    for i, name in enumerate(blocks):
        start, stop, _ = layout.block(name)
        masks_BxN[i, start:stop] = 1

    @jax.jit
    def slq(params_S, batch_S, keys_SxB):
        def one_seed(params, batch, keys_B):
            op = curvature.hessian(loss_fn, params, batch)

            def one_block(args):
                mask_N, key = args
                masked = op.scaled(mask_N)
                probes_PxN = jax.random.rademacher(key, (cfg.slq_probes, op.dim), op.dtype) * mask_N

                def one_probe(v_N):
                    theta_M, s_MxM = curvature.tridiagonal_eigh(curvature.lanczos(masked, v_N, cfg.slq_steps))
                    return theta_M, s_MxM[0] ** 2

                return jax.vmap(one_probe)(probes_PxN)

            return jax.lax.map(one_block, (jnp.asarray(masks_BxN, op.dtype), keys_B))

        return jax.vmap(one_seed)(params_S, batch_S, keys_SxB)

    keys_SxB = jnp.stack([jax.random.split(jax.random.PRNGKey(seed + 7), len(blocks)) for seed in seeds] * 2)
    nodes_SxBxPxM, weights_SxBxPxM = (np.asarray(a, np.float64) for a in slq(params_S, batch_S, keys_SxB))
    if not np.isfinite(nodes_SxBxPxM).all():
        raise SandboxError("the block spectra are not finite: the loss is not finite (lower learning_rate)")
    spectra = [{name: (nodes_SxBxPxM[s, i], weights_SxBxPxM[s, i]) for i, name in enumerate(blocks)}
               for s in range(2 * len(seeds))]
    return {"init": spectra[:len(seeds)], "trained": spectra[len(seeds):]}, layout.dim


def densities(spectra: list, grid_points: int, sigma_ratio: float):
    """Gaussian-smoothed densities of several (nodes, weights) on one grid spanning all of them
    (`curvature.kernel_density`, sigma = sigma_ratio x the joint range)."""
    nodes = np.concatenate([n.ravel() for n, _ in spectra])
    lo, hi = nodes.min(), nodes.max()
    sigma = sigma_ratio * max(hi - lo, 1e-12 * max(abs(hi), 1.0))
    grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, grid_points)
    return grid, [np.asarray(curvature.kernel_density(n, w, grid, sigma)) for n, w in spectra]


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """sqrt(JS(p, q)), JS = (KL(p || m) + KL(q || m)) / 2 with m = (p + q)/2, in bits: in [0, 1]."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl_to_m(a):  # m > 0 wherever a > 0
        on = a > 0
        return np.sum(a[on] * np.log2(a[on] / m[on]))

    return float(np.sqrt(max((kl_to_m(p) + kl_to_m(q)) / 2, 0.0)))


def mean_js_distance(spectra: dict, cfg: Config) -> tuple[float, dict]:
    """Mean over block pairs of the JS distance (base 2) between their densities on a shared grid."""
    pairs = {}
    for a, b in itertools.combinations(spectra, 2):
        _, (pa, pb) = densities([spectra[a], spectra[b]], cfg.grid_points, cfg.sigma_ratio)
        pairs[f"{a} | {b}"] = js_distance(pa, pb)
    return float(np.mean(list(pairs.values()))), pairs


def probe_noise(spectra: dict, cfg: Config) -> list[float]:
    """Per block, the JS distance between the densities of its first two SLQ probes (one spectrum, two estimates)."""
    out = []
    for nodes_PxM, weights_PxM in spectra.values():
        _, (p0, p1) = densities([(nodes_PxM[:1], weights_PxM[:1]), (nodes_PxM[1:2], weights_PxM[1:2])],
                                cfg.grid_points, cfg.sigma_ratio)
        out.append(js_distance(p0, p1))
    return out


def radius(spectrum) -> float:
    """The block's spectral radius max |theta| over its Ritz values."""
    return float(np.max(np.abs(spectrum[0])))


def normalized(spectra: dict) -> dict:
    """Each block's spectrum divided by its spectral radius: shape without scale."""
    return {name: (n / radius((n, w)), w) for name, (n, w) in spectra.items()}


def judge(pairs_t: list[float], pairs_m: list[float], noise: float, standard_errors: float) -> dict:
    """The rule on one seed and stage: mean(pairs_t) - mean(pairs_m) > standard_errors x pooled SE and > noise."""
    t, m = np.asarray(pairs_t, np.float64), np.asarray(pairs_m, np.float64)
    nt, nm = len(t), len(m)
    pooled = np.sqrt(((nt - 1) * t.var(ddof=1) + (nm - 1) * m.var(ddof=1)) / (nt + nm - 2)) if nt + nm > 2 else 0.0
    se = float(pooled * np.sqrt(1 / nt + 1 / nm))
    diff = float(t.mean() - m.mean())
    return {"difference": diff, "pooled_se": se, "probe_noise": noise,
            "passed": bool(diff > standard_errors * se and diff > noise)}


def figures(results: dict, seeds: list[int], cfg: Config, folder: Path) -> list[str]:
    """block_densities.png: overlaid block densities of the first seed (each scaled to peak 1, log y),
    one panel per model; js_distances.png: every pair's JS distance at every seed."""
    fig, axes = plotting.figure(6 * len(results), 4, ncols=len(results))
    for ax, (model, res) in zip(axes, results.items()):
        spectra = res["spectra"]["init"][0]
        grid, dens = densities(list(spectra.values()), 2048, cfg.sigma_ratio)
        for name, d in zip(spectra, dens):
            ax.semilogy(grid, np.maximum(d / d.max(), 1e-4), label=name)
        ax.set(xlabel="eigenvalue of the block's Hessian", ylabel="density / max",
               title=f"{model}, seed {seeds[0]} at init: mean JS distance {res['mean_js']['init'][0]:.3f}")
        ax.legend(fontsize=7)
    names = [plotting.save(fig, folder / "block_densities.png")]
    fig, ax = plotting.figure(8, 4)
    x0 = 0
    for k, (model, res) in enumerate(results.items()):
        pairs = list(res["pairs"]["init"][0])
        for j in range(len(seeds)):
            ax.plot(x0 + np.arange(len(pairs)), [res["pairs"]["init"][j][p] for p in pairs], "o", color=f"C{k}",
                    alpha=0.7, label=f"{model} (one dot per seed)" if j == 0 else None)
        x0 += len(pairs) + 1
    labels = [p for res in results.values() for p in [*res["pairs"]["init"][0], ""]][:-1]
    ax.set_xticks(np.arange(len(labels)), labels, rotation=60, ha="right", fontsize=6)
    ax.set(ylabel="JS distance (base 2)", ylim=(0, 1),
           title=f"block-pair JS distances at init, seeds {seeds[0]}..{seeds[-1]}")
    ax.legend(fontsize=7)
    return names + [plotting.save(fig, folder / "js_distances.png")]


STAGES = ("init", "trained")


def run(cfg: Config, out_dir: Path, progress: bool) -> dict:
    seeds = protocol.seed_list(cfg)
    results = {}
    for model, problem in (("transformer", transformer_problem), ("mlp", mlp_problem)):
        spectra, num_params = block_spectra(cfg, problem, seeds)
        res = {"spectra": spectra, "num_params": num_params, "mean_js": {}, "pairs": {}, "noise": {},
               "radius_spread": {}, "normalized_js": {}}
        for stage in STAGES:
            per_seed = [mean_js_distance(sp, cfg) for sp in spectra[stage]]
            res["mean_js"][stage], res["pairs"][stage] = [m for m, _ in per_seed], [p for _, p in per_seed]
            res["noise"][stage] = [probe_noise(sp, cfg) for sp in spectra[stage]]
            res["radius_spread"][stage] = [max(map(radius, sp.values())) / min(map(radius, sp.values()))
                                           for sp in spectra[stage]]
            res["normalized_js"][stage] = [mean_js_distance(normalized(sp), cfg)[0] for sp in spectra[stage]]
        results[model] = res
        if progress:
            print(f"{model}: mean JS distance between {len(spectra['init'][0])} blocks, per seed, init / trained: "
                  + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(*res["mean_js"].values())))
    names = figures(results, seeds, cfg, out_dir / "figures")
    rows = []
    for j, seed in enumerate(seeds):
        measured, verdicts = {}, {}
        for stage in STAGES:
            t, m = (results[k] for k in ("transformer", "mlp"))
            noise = float(np.mean(t["noise"][stage][j] + m["noise"][stage][j]))
            verdicts[stage] = judge(list(t["pairs"][stage][j].values()), list(m["pairs"][stage][j].values()), noise,
                                    cfg.standard_errors)
            measured.update({
                f"{stage}: transformer mean JS distance": t["mean_js"][stage][j],
                f"{stage}: mlp mean JS distance": m["mean_js"][stage][j],
                f"{stage}: difference": verdicts[stage]["difference"],
                f"{stage}: pooled SE": verdicts[stage]["pooled_se"], f"{stage}: probe noise": noise,
                f"{stage}: transformer radius max/min": t["radius_spread"][stage][j],
                f"{stage}: mlp radius max/min": m["radius_spread"][stage][j],
                f"{stage}: transformer normalized JS": t["normalized_js"][stage][j],
                f"{stage}: mlp normalized JS": m["normalized_js"][stage][j]})
        details = {model: {"num_params": res["num_params"],
                           **{f"pairwise_js_distance_{stage}": res["pairs"][stage][j] for stage in STAGES},
                           "block_extremes": {name: [float(n.min()), float(n.max())]
                                              for name, (n, _) in res["spectra"]["init"][j].items()}}
                   for model, res in results.items()}
        details["verdicts"] = verdicts
        rows.append(protocol.SeedResult(seed, measured, all(v["passed"] for v in verdicts.values()), details))
    bad = [(r.seed, stage, v) for r in rows for stage, v in r.details["verdicts"].items() if not v["passed"]]
    why = "; ".join(f"seed {seed} {stage}: difference {v['difference']:.3f} against 3 SE {3 * v['pooled_se']:.3f} "
                    f"and probe noise {v['probe_noise']:.3f}" for seed, stage, v in bad)
    expected = protocol.Expected(
        prediction="the block Hessian spectra of a transformer differ from each other more than those of an MLP of "
                   "similar size (larger mean pairwise JS distance), at initialization and in training",
        source=SOURCE,
        rule=(f"per seed, at init and after {cfg.train_steps} full-batch Adam steps (lr {cfg.learning_rate:g}): "
              "mean JS distance (transformer) - mean JS distance (MLP) > "
              f"{cfg.standard_errors:g} pooled standard errors (block pairs as samples) and > the probe noise (mean "
              "JS distance between two SLQ probes of the same block, both models)"),
        reason=("the claim is an ordering, heterogeneous vs homogeneous; a difference within the pairs' own spread or "
                "within what two estimates of one spectrum differ by would not show it, so the margin comes from "
                "the run's own noise, not a tuned number. Spectral-radius spread and scale-normalized JS are "
                "reported beside it: JS compares shapes, the paper's argument for Adam is also about scale"))
    return protocol.write(out_dir, "block_heterogeneity", cfg, expected, rows, names, not_reproduced=why)
