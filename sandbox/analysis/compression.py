"""Compression sweeps of a trained run (or of MiniLM): which settings, on what data, at what cost.

    opts = SweepOptions(methods=("svd",), fractions=(0.25, 0.5))
    summary = compression.of_run(run, opts, out_dir)      # compress.json's dict; figures in out_dir

The LM's score is its val loss on the run's own eval set (the one training logged), so the
uncompressed baseline equals training's final val loss at the same step.
"""

import dataclasses
from pathlib import Path

import jax

from sandbox import validate
from sandbox.compress import methods as methods_lib
from sandbox.compress import model as cmodel
from sandbox.compress import quantize, report, sweep, taylor
from sandbox.compress.report import Target
from sandbox.errors import SandboxError
from sandbox.text.data import draw_eval_set

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
