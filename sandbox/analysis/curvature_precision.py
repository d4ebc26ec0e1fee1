"""How much of a trained LM's Hessian spectrum survives when every HVP runs in bf16 or fp16.

The top-k eigenvalues of H = d^2 L / dw^2 (L the mean token cross-entropy on one eval batch) by Lanczos,
with the HVPs in float64 (the reference), float32, bfloat16 and float16 (`numerics.curvature_precision`).
An HVP with relative error ~u perturbs every eigenvalue by about u ||H|| = u lambda_max (Weyl), so an
eigenvalue "survives" a format when its relative error is below `survival` (10%): those well above the
format's Weyl scale u lambda_max do, those near or below it need not. Where the HVPs overflow the format
(inf / NaN, e.g. fp16 on an early checkpoint), none survives, and the report says so.
"""

from pathlib import Path

import jax
import numpy as np

from sandbox import losses, plotting
from sandbox.numerics import curvature_precision

FORMATS = ("float32", "bfloat16", "float16")


def of_run(run, out_dir: Path, k: int = 8, num_steps: int = 40, batch_size: int | None = None, seed: int = 0,
           survival: float = 0.1) -> dict:
    """{"top_eigenvalues": {"float64": [...], fmt: {eigenvalues, rel_error, weyl_scale, survived}}, ...} of
    `run` on its default analysis batch (`Run.analysis_set(batch_size)`, as `sandbox hessian`), and a figure."""
    evals = run.analysis_set(batch_size)
    loss_fn = lambda p, b: losses.cross_entropy(run.logits(p, b), b["targets"]).mean()  # noqa: E731
    out = curvature_precision.top_eigenvalues_by_format(loss_fn, run.params, evals.batch(0), jax.random.key(seed),
                                                        k=k, names=FORMATS, num_steps=num_steps)
    for name in FORMATS:
        rel = out[name]["rel_error"]
        out[name]["survived"] = 0 if rel is None else int(np.sum(np.asarray(rel) < survival))
    result = {"run_dir": str(run.path), "step": run.step, "eval_set": evals.name, "batch_size": evals.batch_size,
              "num_steps": num_steps, "survival_rel_error": survival, "top_eigenvalues": out}
    result["figures"] = [figure(out, Path(out_dir) / "curvature_precision.png")]
    return result


def figure(out: dict, path: Path) -> str:
    """Top eigenvalues per HVP format against float64's, each format's Weyl scale u lambda_max dashed."""
    fig, ax = plotting.figure()
    idx = np.arange(1, len(out["float64"]) + 1)
    ax.semilogy(idx, np.abs(out["float64"]), "k-", marker="o", label="float64 (reference)")
    for i, name in enumerate(FORMATS):
        if out[name]["nonfinite"]:
            ax.plot([], [], linestyle="none", marker="x+1"[i], color=f"C{i}", label=f"{name} HVPs: inf/NaN (overflow)")
            continue
        ax.semilogy(idx, np.abs(out[name]["eigenvalues"]), linestyle="none", marker="x+1"[i], markersize=8,
                    color=f"C{i}", label=f"{name} HVPs ({out[name]['survived']} within 10%)")
        ax.axhline(out[name]["weyl_scale"], color=f"C{i}", linestyle="--", linewidth=0.8)
    ax.set(xlabel="eigenvalue index (descending)", ylabel="|eigenvalue| of the Hessian (loss units / param^2)",
           title="top Hessian eigenvalues by HVP format; dashed: u * lambda_max")
    ax.legend(fontsize=7)
    return plotting.save(fig, path)
