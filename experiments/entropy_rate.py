"""Entropy-rate limit: a transformer trained on a k-th order Markov source approaches its exact entropy rate.

The best possible next-token loss on a stationary source is its entropy rate
H = sum_s pi(s) H(P(. | s)) (nats), computed exactly from the transition table. A model's
expected cross-entropy exceeds it by exactly the expected KL(P(. | s) || q(. | x_<t)) from the true
conditional to the model's, so the KL, measured on every validation position with a full
context, is the model's remaining excess loss. The engine trains the LM (`sandbox.train`),
checkpointing every `eval_every` steps; each checkpoint is then scored against the true table.

The claim, in one sentence: trained long enough, the model's cross-entropy comes within 3% of the source's
entropy rate H (issue 7's reading of "the entropy rate is the floor"). Cross-entropy - H = KL to the true
conditionals exactly, so the rule is KL <= tolerance * H at the final checkpoint (the budget's end: no checkpoint
is selected on the data it is scored on), H the seed's own source's entropy rate, not the family's.
Scope, stated before running: no learner that sees N training symbols can be expected to get below the
estimation floor KL_est = A^k (A - 1) / (2 N), the asymptotic expected KL of the maximum-likelihood table (each
of the A^k rows has A - 1 free parameters, fitted from N pi(s) symbols: sum_s pi(s) (A - 1) / (2 N pi(s))).
A source with tolerance * H < 2 KL_est (a near-deterministic one) asks for an accuracy the data cannot give;
its seed is "not applicable" (its numbers still reported). Each seed draws a new source, data order and
weights; the verdict needs every applicable seed.
"""

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sandbox.experiments import protocol

from sandbox import analysis, plotting
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.text import markov
from sandbox.text.data import load_dataset
from sandbox.train import checkpoint, records, session
from sandbox.train import config as config_lib

SOURCE = ("Shannon 1948; Cover & Thomas, 'Elements of Information Theory' (2nd ed.), ch. 4 (entropy "
          "rates of Markov chains) and ch. 5 (expected log loss = entropy + KL): no predictor beats "
          "the entropy rate; issue 7 asks for a final val cross-entropy within 3% of it")


@dataclass
class Config:
    alphabet: int = 4
    order: int = 2  # k
    concentration: float = 0.1  # Dirichlet concentration of each row of the table
    length: int = 50_000  # symbols sampled (10% held out)
    d_model: int = 32
    n_layers: int = 1
    n_heads: int = 2
    d_ff: int = 64
    seq_len: int = 32
    batch_size: int = 16
    learning_rate: float = 0.01  # AdamW with a cosine schedule
    steps: int = 600
    eval_every: int = 100  # also the checkpoint interval: one KL point per checkpoint
    eval_batches: int = 32
    tolerance: float = 0.03  # pass: KL(true || model) <= tolerance * H at the final checkpoint
    seed: int = 0  # the first seed: source, data order and initial weights
    seeds: int = 3  # independent seeds, one engine run each (the source changes with the seed)

    def __post_init__(self):
        protocol.check_seeds(self.seed, self.seeds)
        for name in ("steps", "eval_every", "eval_batches", "seq_len"):
            if getattr(self, name) <= 0:
                raise SandboxError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.seq_len <= self.order:
            raise SandboxError(f"seq_len={self.seq_len} must exceed order={self.order}")
        if self.tolerance <= 0:
            raise SandboxError(f"tolerance must be positive, got {self.tolerance}")
        self.run_config()  # the engine validates the rest (sizes, alphabet, order, ...)

    def markov(self, seed: int) -> markov.MarkovConfig:
        return markov.MarkovConfig(order=self.order, alphabet=self.alphabet,
                                   concentration=self.concentration, length=self.length, seed=seed)

    def run_config(self, seed: int | None = None) -> config_lib.Config:
        """The engine's config for `seed` (default: the first): the tiny preset with this micro model and
        the Markov corpus of that seed."""
        seed = self.seed if seed is None else seed
        overrides = {
            "data.corpus": "markov", "data.markov.alphabet": self.alphabet, "data.markov.order": self.order,
            "data.markov.concentration": self.concentration, "data.markov.length": self.length,
            "data.markov.seed": seed, "model.d_model": self.d_model, "model.n_layers": self.n_layers,
            "model.n_heads": self.n_heads, "model.d_ff": self.d_ff, "model.seq_len": self.seq_len,
            "train.batch_size": self.batch_size, "optimizer.learning_rate": self.learning_rate,
            "train.steps": self.steps, "train.eval_every": self.eval_every,
            "train.checkpoint_every": self.eval_every, "train.log_every": min(20, self.eval_every),
            "train.keep_checkpoints": self.steps // self.eval_every + 1, "train.num_devices": 1,
            "train.eval_batches": self.eval_batches, "train.seed": seed, "run.name": "entropy_rate",
        }
        return config_lib.load("configs/tiny.yaml", [f"{k}={v}" for k, v in overrides.items()])


def score(params, model_cfg, val_N: np.ndarray, table_SxA: np.ndarray, order: int) -> dict:
    """Means over the val positions with a full k-symbol context of: KL(P(.|s) || q), the expected
    cross-entropy -sum_y P(y|s) log q(y) (= H(P(.|s)) + KL, no label noise), and the sampled one.

    The val stream is cut into non-overlapping windows; logits[:, t] predicts token t + 1 from
    tokens 0..t, whose last k symbols (base-A digits) index the true row P[s].
    """
    length = model_cfg.seq_len
    num = (len(val_N) - 1) // length
    tokens_WxL = jnp.asarray(val_N[:num * length].reshape(num, length))
    targets_WxL = jnp.asarray(val_N[1:num * length + 1].reshape(num, length))
    alphabet = table_SxA.shape[1]
    context_WxL = sum(jnp.roll(tokens_WxL, i, axis=1) * alphabet ** i for i in range(order))
    logq_WxLxA = jax.nn.log_softmax(transformer.apply(params, tokens_WxL, model_cfg), axis=-1)
    p_WxLxA = jnp.asarray(table_SxA, logq_WxLxA.dtype)[context_WxL]
    logp = jnp.log(jnp.where(p_WxLxA > 0, p_WxLxA, 1.0))
    full = slice(order - 1, None)  # positions t >= k - 1 see k symbols (roll wrapped the rest)
    per_position = {
        "kl": jnp.sum(p_WxLxA * (logp - logq_WxLxA), axis=-1),
        "expected_cross_entropy": -jnp.sum(p_WxLxA * logq_WxLxA, axis=-1),
        "sampled_cross_entropy": -jnp.take_along_axis(logq_WxLxA, targets_WxL[..., None], axis=-1)[..., 0],
    }
    return {name: float(v_WxL[:, full].mean()) for name, v_WxL in per_position.items()}


def family_entropy(alphabet: int, concentration: float) -> float:
    """E[H(p)] for p ~ Dirichlet(concentration * 1_A): psi(A a + 1) - psi(a + 1) nats, the mean entropy
    of a row of the random table, i.e. the entropy scale of the family of sources the seeds draw from."""
    a = concentration
    return float(jax.scipy.special.digamma(alphabet * a + 1.0) - jax.scipy.special.digamma(a + 1.0))


def estimation_floor(alphabet: int, order: int, train_symbols: int) -> float:
    """A^k (A - 1) / (2 N): the expected KL (nats) of the maximum-likelihood k-th order table from N symbols."""
    return alphabet**order * (alphabet - 1) / (2 * train_symbols)


def judge(final_kl: float, entropy: float, floor: float, tolerance: float) -> bool | None:
    """The rule: KL <= tolerance * H; None (not applicable) where tolerance * H < 2 x the estimation floor."""
    if tolerance * entropy < 2 * floor:
        return None
    return final_kl <= tolerance * entropy


def one_seed(cfg: Config, seed: int, run_dir: Path, progress: bool) -> protocol.SeedResult:
    """Train on the source of `seed` for the step budget; score every checkpoint against the true table."""
    run_cfg = cfg.run_config(seed)
    train_summary = session.start(run_cfg, run_dir, progress=progress)
    source = cfg.markov(seed)
    entropy, table = markov.entropy_rate(source), markov.transition_table(source)
    data = load_dataset(run_cfg.data, run_cfg.model.seq_len)
    kl_rows = []
    for step in checkpoint.saved_steps(run_dir):
        run = analysis.load(run_dir, step)
        kl_rows.append({"step": step, **score(run.params, run.cfg.model, data.val_N, table, cfg.order)})
    bound = cfg.tolerance * entropy
    floor = estimation_floor(cfg.alphabet, cfg.order, len(data.train_N))
    reached = [r["step"] for r in kl_rows if r["kl"] <= bound]
    final = kl_rows[-1]
    measured = {
        "entropy_rate": entropy, "kl_bound": bound, "final_kl": final["kl"], "estimation_floor": floor,
        "final_excess_percent": 100 * final["kl"] / entropy,
        "steps_needed": reached[0] if reached else None,
        "final_val_cross_entropy": final["expected_cross_entropy"],
    }
    passed = judge(final["kl"], entropy, floor, cfg.tolerance)
    details = {"family_entropy": family_entropy(cfg.alphabet, cfg.concentration), "kl_over_training": kl_rows,
               "engine_final_val_loss": train_summary["final_val_loss"],
               "train_wall_seconds": train_summary["wall_seconds"], "num_params": train_summary["num_params"],
               "metrics": [r for r in records.read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r]}
    if passed is None:
        details["not_applicable"] = (f"{cfg.tolerance:g} H = {bound:.2e} nats is below twice the estimation floor "
                                     f"{floor:.2e}: a near-deterministic source")
    return protocol.SeedResult(seed, measured, passed, details)


def figure(results: list[protocol.SeedResult], tolerance: float, path: Path) -> str:
    """KL(true || model) against steps per seed, each with its bound dashed; the same relative to H."""
    fig, (ax, ax_rel) = plotting.figure(11, 4, ncols=2)
    for i, r in enumerate(results):
        rows = r.details["kl_over_training"]
        steps = [x["step"] for x in rows]
        h = r.measured["entropy_rate"]
        ax.semilogy(steps, [x["kl"] for x in rows], "o-", color=f"C{i}", label=f"seed {r.seed} (H = {h:.3f})")
        ax.axhline(r.measured["kl_bound"], color=f"C{i}", linestyle="--", linewidth=1)
        ax_rel.semilogy(steps, [100 * x["kl"] / h for x in rows], "o-", color=f"C{i}", label=f"seed {r.seed}")
    ax.set(xlabel="step", ylabel="KL(true || model), nats / token",
           title="KL to the true conditionals per seed (dashed: its bound)")
    ax_rel.axhline(100 * tolerance, color="k", linestyle="--", linewidth=1,
                   label=f"{tolerance:.0%} of H")
    ax_rel.set(xlabel="step", ylabel="excess over the entropy rate (%)", title="KL / H per seed")
    ax.legend(fontsize=7)
    ax_rel.legend(fontsize=7)
    return plotting.save(fig, path)


def run(cfg: Config, out_dir: Path, progress: bool) -> dict:
    results = []
    for seed in protocol.seed_list(cfg):
        results.append(one_seed(cfg, seed, out_dir / f"run-seed{seed}", progress))
        if progress:
            m = results[-1].measured
            print(f"seed {seed}: H = {m['entropy_rate']:.4f}, final KL = {m['final_kl']:.2e} "
                  f"(bound {m['kl_bound']:.2e}), steps needed: {m['steps_needed']}")
    name = figure(results, cfg.tolerance, out_dir / "figures" / "kl.png")
    bad = [r for r in results if r.passed is False]
    why = (f"at {len(bad)} of {len(results)} seeds the final KL is "
           + ", ".join(f"{r.measured['final_excess_percent']:.1f}%" for r in bad)
           + f" of H after {cfg.steps} steps (H = " + ", ".join(f"{r.measured['entropy_rate']:.3f}" for r in bad)
           + " nats): the model is still above the 3% line at the budget's end on those sources") if bad else ""
    expected = protocol.Expected(
        prediction=("a transformer trained on a k-th order Markov source approaches its exact entropy rate H: "
                    f"its expected val cross-entropy comes within {cfg.tolerance:.0%} of H, i.e. "
                    f"KL(true conditional || model) <= {cfg.tolerance:g} H, within {cfg.steps} steps"),
        source=SOURCE,
        rule=(f"per seed: at the final checkpoint (step {cfg.steps}, cosine schedule over the budget) the mean KL "
              f"over the val positions with a full context is <= {cfg.tolerance:g} H, H the seed's own source's "
              f"entropy rate; not applicable where {cfg.tolerance:g} H < 2 A^k (A - 1) / (2 N), the "
              "maximum-likelihood table's expected KL from the N training symbols"),
        reason=("cross-entropy - H = KL to the true conditionals exactly, so the claim is a bound on the KL, "
                "measured against the exact table (no label noise); the final checkpoint, not the best of several "
                "scored on the same data (selection). The scope condition is where the claim's accuracy exceeds "
                "what the data can give any estimator; it was fixed before the fresh seeds ran"))
    return protocol.write(out_dir, "entropy_rate", cfg, expected, results, [name], not_reproduced=why)
