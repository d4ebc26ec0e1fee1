"""Edge of stability (Cohen et al. 2021): full-batch GD's sharpness rises to 2/lr, then hovers there.

A tanh MLP fits a fixed data set (Gaussian inputs, random one-hot labels scaled by
`target_scale`, squared loss) by full-batch gradient descent. Gradient descent with step lr is
stable on a quadratic only while the sharpness lambda_max(H) < 2/lr; Cohen et al. observed that
training raises the sharpness (progressive sharpening) until it reaches 2/lr and then keeps it
there (the edge of stability) while the loss keeps falling, non-monotonically. Heavy-ball
momentum (v <- g + beta v, w <- w - lr v) is stable while lambda_max < (2 + 2 beta)/lr, and Adam
while the preconditioned sharpness lambda_max(P^-1/2 H P^-1/2), P = sqrt(nu_hat) + eps, stays
below (2 + 2 b1)/((1 - b1) lr) = 38/lr at b1 = 0.9 (Cohen et al. 2022). All runs of one optimizer
family are vmapped over the learning rate and all over the `seeds` independent seeds (data,
initial weights, Lanczos start); each is one jitted scan, with Lanczos every `sharpness_every`
steps inside it, and the whole experiment is one compiled program. Gradient descent is
heavy-ball with beta = 0.

The claim, in one sentence: trained long enough, full-batch GD's sharpness rises to 2/lr and then hovers at it
(and the analogous thresholds for heavy ball and Adam). The rule, per run (optimizer, lr) and seed, fixed before
the fresh seeds ran: (1) the run does not diverge (a non-finite loss is a failed run, recorded with its step,
not an exception); (2) the sharpness reaches the threshold within the stated budget of `steps`; (3) where it
reached it, its median from the first crossing on lies in `band` x threshold. A seed passes when every run
does. A run that stays below the threshold is reported with its peak ratio and its final / initial loss, so a
run that converged before sharpening reached 2/lr (Cohen et al. note this can happen at small lr) is visible
as such; it still fails "reaches", since the rule is not changed after the fact.
"""

from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sandbox.experiments import protocol

from sandbox import curvature, optim, plotting
from sandbox.errors import SandboxError
from sandbox.nn import plain_mlp

SOURCE = ("Cohen, Kaur, Li, Kolter, Talwalkar 2021, 'Gradient Descent on Neural Networks Typically "
          "Occurs at the Edge of Stability' (ICLR); Cohen et al. 2022, 'Adaptive Gradient Methods at "
          "the Edge of Stability' (arXiv:2207.14484)")


@dataclass
class Config:
    num_points: int = 512  # N, the fixed full batch
    input_dim: int = 16
    num_classes: int = 10  # outputs; labels are random, targets target_scale * onehot
    target_scale: float = 3.0
    width: int = 32
    depth: int = 3  # hidden layers
    activation: str = "tanh"
    steps: int = 2000
    sharpness_every: int = 20
    lanczos_steps: int = 20
    gd_learning_rates: list[float] = field(default_factory=lambda: [0.2, 0.14, 0.1])
    momentum_learning_rates: list[float] = field(default_factory=lambda: [0.02])
    momentum_beta: float = 0.9
    adam_learning_rates: list[float] = field(default_factory=lambda: [1e-3])
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-7
    band: list[float] = field(default_factory=lambda: [0.9, 1.2])  # pass: median / threshold in it
    seed: int = 0  # the first seed
    seeds: int = 3  # independent seeds (data, initial weights, Lanczos start), vmapped

    def __post_init__(self):
        protocol.check_seeds(self.seed, self.seeds)
        for name in ("num_points", "input_dim", "num_classes", "width", "depth", "steps",
                     "sharpness_every", "lanczos_steps"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.steps % self.sharpness_every:
            raise SandboxError(f"steps={self.steps} must be a multiple of sharpness_every={self.sharpness_every}")
        lrs = [*self.gd_learning_rates, *self.momentum_learning_rates, *self.adam_learning_rates]
        if not lrs or min(lrs) <= 0:
            raise SandboxError(f"learning rates must be positive and at least one given, got {lrs}")
        for name in ("momentum_beta", "adam_b1", "adam_b2"):
            if not 0 <= getattr(self, name) < 1:
                raise SandboxError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if len(self.band) != 2 or not 0 < self.band[0] < self.band[1]:
            raise SandboxError(f"band must be [low, high] with 0 < low < high, got {self.band}")
        plain_mlp.check_activation(self.activation)


def problem(cfg: Config, seed):
    """(batch, params, lanczos key) of one seed, all drawn from PRNGKey(seed) (traceable: vmaps over seeds).

    The batch is x_NxD ~ N(0, I), y_NxC = target_scale * onehot(random labels): hard to fit, so it sharpens.
    """
    k_x, k_y, k_init, k_lanczos = jax.random.split(jax.random.PRNGKey(seed), 4)
    x_NxD = jax.random.normal(k_x, (cfg.num_points, cfg.input_dim))
    labels_N = jax.random.randint(k_y, (cfg.num_points,), 0, cfg.num_classes)
    batch = (x_NxD, cfg.target_scale * jax.nn.one_hot(labels_N, cfg.num_classes))
    params = plain_mlp.init(k_init, [cfg.input_dim] + [cfg.width] * cfg.depth + [cfg.num_classes])
    return batch, params, k_lanczos


def _loss_fn(activation: str):
    def loss(params, batch):
        """L = (1/2N) sum_n ||f(x_n) - y_n||^2."""
        x_NxD, y_NxC = batch
        return 0.5 * jnp.mean(jnp.sum((plain_mlp.apply(params, x_NxD, activation) - y_NxC) ** 2, -1))
    return loss


def _trajectory(cfg, loss_fn, batch, params, optimizer, measure):
    """Per-step losses (steps,) and `measure(params, opt_state)` every sharpness_every steps."""

    def chunk(carry, _):
        def step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        carry, losses = jax.lax.scan(step, carry, None, length=cfg.sharpness_every)
        return carry, (losses, measure(*carry))

    _, (losses_CxS, sharp_C) = jax.lax.scan(chunk, (params, optimizer.init(params)), None,
                                            length=cfg.steps // cfg.sharpness_every)
    return losses_CxS.reshape(-1), sharp_C


def all_runs(cfg: Config, seeds: list[int], loss_fn):
    """{family: (losses SxRxT, sharpness SxRxK)} for every seed S and run R, one jitted program.

    Heavy-ball runs (GD is beta = 0) are vmapped over (lr, beta), Adam's over lr, both over seeds;
    Adam's sharpness is the preconditioned one. K = steps / sharpness_every measurements.
    """
    hb = [(lr, 0.0) for lr in cfg.gd_learning_rates] + [(lr, cfg.momentum_beta) for lr in cfg.momentum_learning_rates]

    def one_seed(seed):
        batch, params, key = problem(cfg, seed)
        out = {}
        if hb:
            measure = lambda p, s: curvature.sharpness(loss_fn, p, batch, key, cfg.lanczos_steps)  # noqa: E731
            one = lambda lr, beta: _trajectory(cfg, loss_fn, batch, params, optim.momentum(lr, beta),  # noqa: E731
                                               measure)
            out["heavy_ball"] = jax.vmap(one)(jnp.asarray([h[0] for h in hb]), jnp.asarray([h[1] for h in hb]))
        if cfg.adam_learning_rates:
            args = {"b1": cfg.adam_b1, "b2": cfg.adam_b2, "eps": cfg.adam_eps}

            def measure_adam(p, state):
                precond = optim.preconditioner("adam", args, state)
                return curvature.preconditioned_sharpness(loss_fn, p, batch, key, precond,
                                                          num_steps=cfg.lanczos_steps)

            def one_adam(lr):
                return _trajectory(cfg, loss_fn, batch, params, optim.adam(lr, **args), measure_adam)

            out["adam"] = jax.vmap(one_adam)(jnp.asarray(cfg.adam_learning_rates))
        return out

    return jax.tree.map(np.asarray, jax.jit(jax.vmap(one_seed))(jnp.asarray(seeds)))


def judge(sharp_C, losses_T, threshold: float, cfg: Config) -> dict:
    """The rule on one run: diverged?, first measurement at or above the threshold, median from there on."""
    sharp_C, losses_T = np.asarray(sharp_C, np.float64), np.asarray(losses_T, np.float64)
    out = {"threshold": threshold, "budget_steps": len(losses_T), "diverged_step": None, "crossing_step": None,
           "peak_ratio": None, "median_after_crossing": None, "ratio": None,
           "reached": False, "hovers": None, "verdict": protocol.FAIL}
    bad = np.flatnonzero(~np.isfinite(losses_T))
    if bad.size:
        out["diverged_step"] = int(bad[0]) + 1
        return out
    out["peak_ratio"] = float(sharp_C.max() / threshold)
    out["final_ratio"] = float(sharp_C[-1] / threshold)
    above = np.flatnonzero(sharp_C >= threshold)
    if above.size == 0:
        return out
    median = float(np.median(sharp_C[above[0]:]))
    hovers = bool(cfg.band[0] <= median / threshold <= cfg.band[1])
    return {**out, "crossing_step": int((above[0] + 1) * cfg.sharpness_every), "median_after_crossing": median,
            "ratio": median / threshold, "reached": True, "hovers": hovers,
            "verdict": protocol.PASS if hovers else protocol.FAIL}


def why_not(results: list) -> str:
    """Which runs failed and how, from the measurements ("" when none did)."""
    lines = []
    for r in results:
        for d in r.details["runs"]:
            name = f"seed {r.seed}, {d['optimizer']} lr={d['learning_rate']:g}"
            if d["diverged_step"] is not None:
                lines.append(f"{name} diverged at step {d['diverged_step']}")
            elif not d["reached"]:
                lines.append(f"{name} never reached its threshold in {d['budget_steps']} steps: its sharpness "
                             f"peaked at {d['peak_ratio']:.3f} and ended at {d['final_ratio']:.3f} x threshold while "
                             f"the loss fell to {d['final_loss'] / d['initial_loss']:.2g} x its initial value "
                             "(progressive sharpening stopped below the edge)")
            elif not d["hovers"]:
                lines.append(f"{name} crossed but its median sits at {d['ratio']:.3f} x threshold")
    return "; ".join(lines)


def runs(cfg: Config, seeds: list[int]) -> list[dict]:
    """One dict per optimizer run: its hyperparameters, threshold, losses SxT and sharpness SxK over seeds."""
    out = all_runs(cfg, seeds, _loss_fn(cfg.activation))
    b1 = cfg.adam_b1
    specs = [("gd", lr, 0.0, 2 / lr) for lr in cfg.gd_learning_rates]
    beta = cfg.momentum_beta
    specs += [("momentum", lr, beta, (2 + 2 * beta) / lr) for lr in cfg.momentum_learning_rates]
    hb = [(spec, out["heavy_ball"], i) for i, spec in enumerate(specs)]
    adam = [(("adam", lr, b1, (2 + 2 * b1) / ((1 - b1) * lr)), out["adam"], i)
            for i, lr in enumerate(cfg.adam_learning_rates)]
    return [{"optimizer": name, "learning_rate": lr, "beta": beta, "threshold": threshold,
             "losses_SxT": losses[:, i], "sharpness_SxK": sharp[:, i]}
            for (name, lr, beta, threshold), (losses, sharp), i in hb + adam]


def label(r: dict) -> str:
    return f"{r['optimizer']} lr={r['learning_rate']:g}"


def figures(rows: list[dict], seeds: list[int], every: int, folder: Path) -> list[str]:
    """sharpness.png: sharpness against steps, one line per seed, each threshold dashed; loss.png."""
    families = list(dict.fromkeys(r["optimizer"] for r in rows))
    titles = {"gd": "gradient descent: 2/lr", "momentum": "heavy ball: (2+2 beta)/lr",
              "adam": "Adam, preconditioned: (2+2 b1)/((1-b1) lr)"}
    fig, axes = plotting.figure(5 * len(families), 4, ncols=len(families))
    for ax, family in zip(np.atleast_1d(axes), families):
        for i, r in enumerate(x for x in rows if x["optimizer"] == family):
            sharp_SxK = r["sharpness_SxK"]
            steps_K = every * np.arange(1, sharp_SxK.shape[1] + 1)
            for j, sharp_K in enumerate(sharp_SxK):
                ax.plot(steps_K, sharp_K, color=f"C{i}", linewidth=0.9, alpha=0.8,
                        label=f"lr={r['learning_rate']:g} ({len(seeds)} seeds)" if j == 0 else None)
            ax.axhline(r["threshold"], color=f"C{i}", linestyle="--", linewidth=1)
        ylabel = "preconditioned sharpness" if family == "adam" else "sharpness (top Hessian eigenvalue)"
        ax.set(title=titles[family], xlabel="step", ylabel=ylabel,
               yscale="log" if family == "adam" else "linear")
        ax.legend(fontsize=7)
    fig.suptitle(f"sharpness per seed (seeds {seeds[0]}..{seeds[-1]}); dashed: stability threshold")
    names = [plotting.save(fig, folder / "sharpness.png")]
    fig, ax = plotting.figure(6, 4)
    for i, r in enumerate(rows):
        for j, losses_T in enumerate(r["losses_SxT"]):
            ax.plot(np.arange(1, len(losses_T) + 1), losses_T, color=f"C{i}", linewidth=0.8, alpha=0.8,
                    label=label(r) if j == 0 else None)
    ax.set(xlabel="step", ylabel="train loss (squared error)", yscale="log",
           title=f"full-batch training loss, {len(seeds)} seeds per run")
    ax.legend(fontsize=7)
    return names + [plotting.save(fig, folder / "loss.png")]


def run(cfg: Config, out_dir: Path, progress: bool) -> dict:
    seeds = protocol.seed_list(cfg)
    rows = runs(cfg, seeds)
    results = []
    for j, seed in enumerate(seeds):
        measured, details, ok = {}, [], True
        for r in rows:
            losses_T = r["losses_SxT"][j]
            verdict = judge(r["sharpness_SxK"][j], losses_T, r["threshold"], cfg)
            measured[f"{label(r)}: median / threshold"] = verdict["ratio"]
            measured[f"{label(r)}: crossing step"] = verdict["crossing_step"]
            hyper = {"momentum": {"beta": r["beta"]}, "adam": {"b1": r["beta"]}}.get(r["optimizer"], {})
            details.append({"optimizer": r["optimizer"], "learning_rate": r["learning_rate"], **hyper,
                            "initial_loss": float(losses_T[0]), "final_loss": float(losses_T[-1]), **verdict})
            ok &= verdict["verdict"] == protocol.PASS
        results.append(protocol.SeedResult(seed, measured, ok, {"runs": details}))
        if progress:
            print(f"seed {seed}: {'pass' if ok else 'fail'}; " + ", ".join(
                f"{d['optimizer']} {d['ratio'] if d['ratio'] is None else round(d['ratio'], 3)}" for d in details))
    names = figures(rows, seeds, cfg.sharpness_every, out_dir / "figures")
    lo, hi = cfg.band
    b1 = cfg.adam_b1
    expected = protocol.Expected(
        prediction=("the sharpness rises to the optimizer's stability threshold and then hovers there: "
                    f"GD 2/lr, heavy-ball (2 + 2 beta)/lr, Adam (preconditioned) (2 + 2 b1)/((1 - b1) lr) "
                    f"= {(2 + 2 * b1) / (1 - b1):g}/lr"),
        source=SOURCE,
        rule=(f"per seed, every run: no divergence (a non-finite loss fails the run), its sharpness reaches its "
              f"threshold within the budget of {cfg.steps} steps, and its median from the first crossing on lies "
              f"in [{lo}, {hi}] x threshold"),
        reason=("the threshold is where the quadratic model of the update becomes unstable (an eigenvalue "
                "of the update map leaves the unit disc), so the sharpness cannot stay above it for long; "
                "Cohen et al. report it oscillating slightly above, hence a band skewed upward"))
    return protocol.write(out_dir, "edge_of_stability", cfg, expected, results, names,
                          not_reproduced=why_not(results))
