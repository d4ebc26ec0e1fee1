"""Compression sweeps of a trained run (or of MiniLM): which settings, on what data, at what cost.

    opts = SweepOptions(methods=("svd",), fractions=(0.25, 0.5))
    summary = compression.of_run(run, opts, out_dir)      # compress.json's dict; figures in out_dir

The LM's score is its val loss on the run's own eval set (the one training logged), so the
uncompressed baseline equals training's final val loss at the same step.
"""

import dataclasses
from pathlib import Path

import jax
import numpy as np

from sandbox import optim, validate
from sandbox.compress import methods as methods_lib
from sandbox.compress import model as cmodel
from sandbox.compress import obs, quantize, report, sweep, taylor
from sandbox.compress.report import Target
from sandbox.errors import SandboxError
from sandbox.text.data import draw_eval_set
from sandbox.train import checkpoint

CALIBRATION_STREAM = 10_000  # seed offset of the calibration windows
DIAGONAL_STREAM = 20_000  # seed offset of the Hessian diagonal's probes
SVD_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    """The settings of a sweep, by method family (see `sandbox.compress.methods`)."""

    methods: tuple = tuple(methods_lib.METHODS)
    fractions: tuple = SVD_FRACTIONS  # svd: kept parameter fraction per layer
    ranks: tuple = ()  # svd: fixed ranks instead of fractions
    energies: tuple = ()  # svd: kept energy sum s_i^2 instead of fractions
    budget: bool = False  # svd: fractions as one global parameter budget
    bits: tuple = (8, 4)
    granularities: tuple = ("tensor", "channel", "group")
    group_size: int = 32
    symmetric: bool = True
    act_order: bool = False  # gptq: fix input rows in decreasing calibration energy
    floats: tuple = ("bfloat16", "float16")
    sparsities: tuple = (0.1, 0.3, 0.5, 0.7, 0.9)
    nm: tuple = ((2, 4),)
    eval_batches: int | None = None  # None: the run's eval set as it is
    batch_size: int | None = None
    calib_batches: int = 4
    diag_probes: int = 32  # Hutchinson probes for the Hessian diagonal of predicted_delta_loss_diag

    def __post_init__(self):
        if not self.methods:
            raise SandboxError(f"--method is empty: choose from {', '.join(methods_lib.METHODS)}")
        bad = [m for m in self.methods if m not in methods_lib.METHODS]
        if bad:
            raise SandboxError(f"--method {','.join(self.methods)!r} is invalid: choose from "
                               + ", ".join(methods_lib.METHODS))
        for name in ("eval_batches", "batch_size"):
            if getattr(self, name) is not None:
                validate.positive_int("compress", name, getattr(self, name))
        validate.positive_int("compress", "calib_batches", self.calib_batches)
        validate.positive_int("compress", "diag_probes", self.diag_probes)
        validate.positive_int("compress", "group_size", self.group_size)
        for d in self.floats:
            if d not in quantize.FLOAT_DTYPES:
                raise SandboxError(f"--floats {d!r} is not supported: choose from {', '.join(quantize.FLOAT_DTYPES)}")
        for b in self.bits:
            if b not in quantize.BITS:
                raise SandboxError(f"--bits {b} is not supported: choose from {', '.join(map(str, quantize.BITS))}")


def plan(opts: SweepOptions) -> dict:
    """{method: [setting, ...]}: each method's settings from its family's options."""
    if opts.ranks:
        svd = [{"rank": r} for r in opts.ranks]
    elif opts.energies:
        svd = [{"energy": e} for e in opts.energies]
    else:
        svd = [{"budget" if opts.budget else "fraction": f} for f in opts.fractions]
    integer = [{"bits": b, "symmetric": opts.symmetric, "granularity": g, "group_size": opts.group_size}
               for b in opts.bits for g in opts.granularities]
    pruning = [{"sparsity": s} for s in opts.sparsities] + [{"n": n, "m": m} for n, m in opts.nm]
    by_family = {"svd": svd, "quantize": [{"dtype": d} for d in opts.floats] + integer, "prune": pruning,
                 "integer": [{**s, "act_order": opts.act_order} for s in integer]}
    return {m: by_family[methods_lib.get(m).family] for m in opts.methods}


def lm_target(run, opts: SweepOptions = SweepOptions()) -> Target:
    """A trained `Run` as a compression `Target`: val loss on its eval set (or a named subset/variant);
    calibration activations from the train split (never from the eval windows); the val loss's gradient,
    Hessian and Hessian diagonal on the same eval set predict each row's change."""
    evals = run.eval_subset(opts.eval_batches, opts.batch_size)

    def evaluate(p):
        return {"val_loss": run.val_loss(p, evals)}

    def calibrate():
        key = jax.random.PRNGKey(run.cfg.train.seed + CALIBRATION_STREAM)
        calib = draw_eval_set(run.data.train_N, key, opts.calib_batches, evals.batch_size, run.cfg.model.seq_len,
                              name="train/calibration")
        return cmodel.calibrate(run.logits, run.params, calib.batches(), groups=run.groups())

    def second_order():
        key = jax.random.PRNGKey(run.cfg.train.seed + DIAGONAL_STREAM)
        return taylor.expand(run.loss, run.params, evals.batches(), diag_probes=opts.diag_probes, key=key)

    info = {"run": str(run.path), "step": run.step, "eval_set": evals.name, "eval_tokens": evals.num_tokens}
    return Target(name=run.name, params=run.params, evaluate=evaluate, metric="val_loss", calibrate=calibrate,
                  info=info, groups=run.groups(), unit="nats/token", second_order=second_order)


def check(target: Target, settings: dict) -> None:
    """Raise before any work if a setting cannot apply to one of the target's layers."""
    sweep.validate(target.params, settings, target.groups)


def study(target: Target, settings: dict, out_dir: Path, progress=print) -> dict:
    """Sweep every method of `settings` over `target`; figures into `out_dir`; compress.json's dict."""
    check(target, settings)
    return report.study(target, settings, Path(out_dir), progress)


def hessian_beside_adam(h_IxI, precond_IxO, k: int = 8) -> dict:
    """One layer's curvature as compression sees it (GPTQ's H = 2 X^T X) beside optimization (Adam's P).

    Adam's P_ij = sqrt(nu_ij) (+ eps) averages squared gradients (x_i delta_j)^2, which KFAC's model factors
    as A_ii B_jj with A = X^T X / T: its input-side marginal r_i = sum_j P_ij^2 is diag(H) up to scale. Adam
    sees the inputs' energies, never their correlations (the off-diagonal of H that GPTQ spends errors on).
    Returns eigenvalues of H, diag(H) and r (descending, each over its largest), Spearman of diag(H) and r,
    and the principal angles (degrees) between H's top-k eigenvectors and the k coordinate axes of largest r
    (Adam's stiffest inputs) and of largest diag(H) (act-order's first rows): arccos of the singular
    values of the eigenvectors' rows at those axes.
    """
    h = np.asarray(h_IxI, np.float64)
    evals, evecs = np.linalg.eigh(h)
    top_IxK = evecs[:, ::-1][:, :k]
    r = np.sum(np.asarray(precond_IxO, np.float64) ** 2, axis=1)

    def angles(score):
        axes = np.argsort(-score, kind="stable")[:k]
        cosines = np.linalg.svd(top_IxK[axes], compute_uv=False)
        return np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0)))  # ascending: the closest pair first

    ordered = lambda x: np.sort(x)[::-1] / np.max(x)  # noqa: E731
    return {"eigenvalues": ordered(evals), "diagonal": ordered(np.diag(h)), "adam": ordered(r),
            "spearman_diag_adam": taylor.spearman(np.diag(h), r), "angles_adam": angles(r),
            "angles_diagonal": angles(np.diag(h)), "k": k}


def hessian_beside_adam_of_run(run, layer: str, opts: SweepOptions = SweepOptions(), k: int = 8) -> dict:
    """`hessian_beside_adam` of one linear layer ("block_0/mlp/up") of an Adam-trained run: H from the
    calibration windows of the train split (as GPTQ), P from the checkpoint's optimizer state."""
    stats = lm_target(run, opts).calibrate()
    if layer not in stats:
        raise SandboxError(f"layer {layer!r} is not a linear layer of the run: choose from {', '.join(stats)}")
    cfg, state = checkpoint.load_state(run.path, run.step)
    precond = optim.preconditioner(cfg.optimizer.name, cfg.optimizer.args, state.opt_state)
    if precond is None:
        raise SandboxError(f"optimizer {cfg.optimizer.name!r} has no diagonal preconditioner to compare with")
    for name in layer.split("/"):
        precond = precond[name]
    return hessian_beside_adam(obs.layer_hessian(stats[layer]["gram"]), precond["w"], k)
