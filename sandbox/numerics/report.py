"""The three numerics reports behind `sandbox numerics formats|errors|fd`: data plus a figure each."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from sandbox.numerics import errors, finite_diff, formats


def formats_report(out_dir: Path) -> dict:
    """The constants of every format and a figure of their representable numbers."""
    return {"formats": formats.table(), "figures": [formats.plot_formats(Path(out_dir) / "formats.png")]}


def errors_report(out_dir: Path) -> dict:
    """Naive vs stable LLM ops per format, overflow points vs ln(largest finite), summation errors vs bounds."""
    ops = errors.op_errors()
    sums = errors.summation_errors("float32") + errors.summation_errors("bfloat16")
    return {"ops": ops, "overflow": errors.overflow_table(), "summation": sums,
            "figures": [errors.plot_errors(ops, sums, Path(out_dir) / "errors.png")]}


def fd_report(out_dir: Path, points: int = 32) -> dict:
    """Forward / central / complex-step derivatives of exp on [0.5, 1.5] against h, in float32 and float64."""
    hs = 10.0 ** np.linspace(-13, 0, 53)
    x = np.linspace(0.5, 1.5, points)
    sweeps = {name: finite_diff.step_sweep(jnp.exp, x, name, hs) for name in ("float32", "float64")}
    best = {name: {"measured": finite_diff.best_steps(s), "theory_h": finite_diff.theory_steps(name)}
            for name, s in sweeps.items()}
    return {"function": "exp(x), x in [0.5, 1.5]", "best": best,
            "figures": [finite_diff.plot_sweeps(sweeps, Path(out_dir) / "finite_differences.png")]}


REPORTS = {"formats": formats_report, "errors": errors_report, "fd": fd_report}
