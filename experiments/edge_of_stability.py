"""Edge of stability (Cohen et al. 2021): full-batch GD's sharpness rises to 2/lr, then hovers there.

A tanh MLP fits a fixed data set (Gaussian inputs, random one-hot labels scaled by
`target_scale`, squared loss) by full-batch gradient descent. Gradient descent with step lr is
stable on a quadratic only while the sharpness lambda_max(H) < 2/lr; Cohen et al. observed that
training raises the sharpness (progressive sharpening) until it reaches 2/lr and then keeps it
there (the edge of stability) while the loss keeps falling, non-monotonically. Heavy-ball
momentum (v <- g + beta v, w <- w - lr v) is stable while lambda_max < (2 + 2 beta)/lr, and Adam
while the preconditioned sharpness lambda_max(P^-1/2 H P^-1/2), P = sqrt(nu_hat) + eps, stays
below (2 + 2 b1)/((1 - b1) lr) = 38/lr at b1 = 0.9 (Cohen et al. 2022). All runs of one optimizer
family are vmapped over the learning rate; each is one jitted scan, with Lanczos every
`sharpness_every` steps inside it. Gradient descent is heavy-ball with beta = 0 (one compile).
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import common_mlp
from sandbox import curvature, optim
from sandbox.errors import SandboxError
from sandbox.train import records

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
    seed: int = 0

    def __post_init__(self):
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
        common_mlp.check_activation(self.activation)


def make_data(cfg: Config):
    """(x_NxD ~ N(0, I), y_NxC = target_scale * onehot(random labels)): hard to fit, so it sharpens."""
    kx, ky = jax.random.split(jax.random.PRNGKey(cfg.seed))
    x_NxD = jax.random.normal(kx, (cfg.num_points, cfg.input_dim))
    labels_N = jax.random.randint(ky, (cfg.num_points,), 0, cfg.num_classes)
    return x_NxD, cfg.target_scale * jax.nn.one_hot(labels_N, cfg.num_classes)


def _loss_fn(activation: str):
    def loss(params, batch):
        """L = (1/2N) sum_n ||f(x_n) - y_n||^2."""
        x_NxD, y_NxC = batch
        return 0.5 * jnp.mean(jnp.sum((common_mlp.apply(params, x_NxD, activation) - y_NxC) ** 2, -1))
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


def heavy_ball_runs(cfg, loss_fn, batch, params, lrs, betas):
    """(losses RxT, sharpness RxC) of heavy-ball runs, vmapped over (lr, beta); beta = 0 is GD."""
    key = jax.random.PRNGKey(cfg.seed + 1)
    measure = lambda p, s: curvature.sharpness(loss_fn, p, batch, key, cfg.lanczos_steps)  # noqa: E731
    one = lambda lr, beta: _trajectory(cfg, loss_fn, batch, params, optim.momentum(lr, beta), measure)  # noqa: E731
    return jax.jit(jax.vmap(one))(jnp.asarray(lrs), jnp.asarray(betas))


def adam_runs(cfg, loss_fn, batch, params, lrs):
    """(losses RxT, preconditioned sharpness RxC) of full-batch Adam, vmapped over lr."""
    key = jax.random.PRNGKey(cfg.seed + 1)

    args = {"b1": cfg.adam_b1, "b2": cfg.adam_b2, "eps": cfg.adam_eps}

    def measure(p, state):
        precond = optim.preconditioner("adam", args, state)
        return curvature.preconditioned_sharpness(loss_fn, p, batch, key, precond, num_steps=cfg.lanczos_steps)

    def one(lr):
        return _trajectory(cfg, loss_fn, batch, params, optim.adam(lr, **args), measure)

    return jax.jit(jax.vmap(one))(jnp.asarray(lrs))


def judge(sharp_C, threshold: float, cfg: Config) -> dict:
    """First measurement at or above the threshold, and the median sharpness from there on."""
    sharp_C = np.asarray(sharp_C, dtype=np.float64)
    above = np.flatnonzero(sharp_C >= threshold)
    if above.size == 0:
        return {"threshold": threshold, "crossing_step": None, "max_sharpness": float(sharp_C.max()),
                "median_after_crossing": None, "ratio": None, "verdict": "fail"}
    median = float(np.median(sharp_C[above[0]:]))
    ratio = median / threshold
    ok = cfg.band[0] <= ratio <= cfg.band[1]
    return {"threshold": threshold, "crossing_step": int((above[0] + 1) * cfg.sharpness_every),
            "max_sharpness": float(sharp_C.max()), "median_after_crossing": median, "ratio": ratio,
            "verdict": "pass" if ok else "fail"}


def figures(curves, every: int, folder: Path) -> None:
    """sharpness.png: sharpness against steps with each threshold dashed; loss.png: loss against steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    families = list(dict.fromkeys(c[0] for c in curves))
    titles = {"gd": "gradient descent: 2/lr", "momentum": "heavy ball: (2+2 beta)/lr",
              "adam": "Adam, preconditioned: (2+2 b1)/((1-b1) lr)"}
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4), squeeze=False)
    for ax, family in zip(axes[0], families):
        for i, (name, lr, _, threshold, _, sharp_C) in enumerate(c for c in curves if c[0] == family):
            steps_C = every * np.arange(1, len(sharp_C) + 1)
            ax.plot(steps_C, sharp_C, color=f"C{i}", label=f"lr={lr:g}")
            ax.axhline(threshold, color=f"C{i}", linestyle="--", linewidth=1)
        ax.set(title=titles[family], xlabel="step", ylabel="sharpness",
               yscale="log" if family == "adam" else "linear")
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "sharpness.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, lr, _, _, losses_T, _ in curves:
        ax.plot(np.arange(1, len(losses_T) + 1), losses_T, label=f"{name} lr={lr:g}")
    ax.set(xlabel="step", ylabel="train loss (squared)", yscale="log", title="full-batch training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "loss.png", dpi=120)
    plt.close(fig)


def run(cfg: Config, out_dir: Path, progress: bool) -> dict:
    batch = make_data(cfg)
    loss_fn = _loss_fn(cfg.activation)
    params = common_mlp.init(jax.random.PRNGKey(cfg.seed + 2),
                             [cfg.input_dim] + [cfg.width] * cfg.depth + [cfg.num_classes])
    specs = [("gd", lr, 0.0, 2 / lr) for lr in cfg.gd_learning_rates]
    specs += [("momentum", lr, cfg.momentum_beta, (2 + 2 * cfg.momentum_beta) / lr)
              for lr in cfg.momentum_learning_rates]
    curves = []
    if specs:
        losses, sharp = heavy_ball_runs(cfg, loss_fn, batch, params, [s[1] for s in specs],
                                        [s[2] for s in specs])
        curves = [(*s, np.asarray(losses[i]), np.asarray(sharp[i])) for i, s in enumerate(specs)]
    b1 = cfg.adam_b1
    if cfg.adam_learning_rates:
        losses, sharp = adam_runs(cfg, loss_fn, batch, params, cfg.adam_learning_rates)
        curves += [("adam", lr, b1, (2 + 2 * b1) / ((1 - b1) * lr), np.asarray(losses[i]),
                    np.asarray(sharp[i])) for i, lr in enumerate(cfg.adam_learning_rates)]

    measured = []
    for name, lr, beta, threshold, losses_T, sharp_C in curves:
        if not np.isfinite(losses_T).all():
            raise SandboxError(f"{name} at lr={lr} diverged (NaN loss); lower its learning rate")
        hyper = {"momentum": {"beta": beta}, "adam": {"b1": beta}}.get(name, {})
        row = {"optimizer": name, "learning_rate": lr, **hyper,
               "initial_loss": float(losses_T[0]), "final_loss": float(losses_T[-1]),
               **judge(sharp_C, threshold, cfg)}
        measured.append(row)
    figures(curves, cfg.sharpness_every, out_dir / "figures")
    lo, hi = cfg.band
    summary = {
        "measured": measured,
        "expected": {
            "claim": (f"after the sharpness first reaches the stability threshold, its median lies in "
                      f"[{lo}, {hi}] x threshold; thresholds: GD 2/lr, heavy-ball (2 + 2 beta)/lr, "
                      f"Adam (preconditioned) (2 + 2 b1)/((1 - b1) lr) = {(2 + 2 * b1) / (1 - b1):g}/lr"),
            "source": SOURCE,
        },
        "setup": dataclasses.asdict(cfg),
        "verdict": "pass" if all(r["verdict"] == "pass" for r in measured) else "fail",
    }
    records.write_json(out_dir / "summary.json", summary)
    return summary
