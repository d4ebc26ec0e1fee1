"""One compression study of a model: spectra, sweeps per method, compress.json rows and figures.

A `Target` is what any model brings: its params, `evaluate(params) -> {metric: value, ...}`,
the name and unit of the main metric (val_loss in nats/token for an LM, mean_cosine for a sentence
encoder), a `calibrate()` that returns per-layer activation statistics for activation-aware SVD,
its parameter grouping (which subtrees are linear maps; inferred from names if None), how
factorized layers are scored (`rank_multiple`, see `sandbox.compress.model.densify`), and, for a metric
that is a loss, a `second_order()` that returns its second-order model (`sandbox.compress.taylor`): then every
row also records delta_loss (measured) beside predicted_delta_loss and predicted_delta_loss_diag, the
summary their agreement, and a figure plots one against the other.
"""

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from sandbox.compress import figures, methods, spectra, sweep, taylor
from sandbox.compress import model as cmodel


@dataclasses.dataclass
class Target:
    name: str
    params: dict
    evaluate: Callable[[dict], dict]
    metric: str
    calibrate: Callable[[], dict]
    info: dict = dataclasses.field(default_factory=dict)
    groups: dict | None = None
    unit: str = ""
    rank_multiple: int | None = None
    second_order: Callable[[], taylor.Taylor] | None = None
    small_change: float = 0.01  # |delta_loss| up to which the quadratic model is judged ("small changes")


def dense_weights(params, groups: dict | None = None) -> dict:
    """{path: W as float32 numpy} for every dense linear layer."""
    return {k: np.asarray(p["w"], np.float32) for k, p in cmodel.linear_layers(params, groups).items() if "w" in p}


def layer_esds(params, groups: dict | None = None) -> dict:
    """{path: eigenvalues of W^T W (`spectra.esd`, one SVD)} for every dense linear layer, for the table and figures."""
    return {k: spectra.esd(w) for k, w in dense_weights(params, groups).items()}


def spectra_table(params, groups: dict | None = None, esds: dict | None = None) -> dict:
    """{path: `spectra.layer_spectrum(W)`} for every dense linear layer (from `esds` when given)."""
    esds = layer_esds(params, groups) if esds is None else esds
    return {k: spectra.layer_spectrum(w, esds[k]) for k, w in dense_weights(params, groups).items()}


def write_spectra_figures(esds: dict, table: dict, out: Path, title: str) -> list[str]:
    """Singular values, ESD grid and alpha per layer from `layer_esds` and `spectra_table`, written into out."""
    return [figures.plot_singular_values(esds, out / "singular_values.png", f"singular values per layer ({title})"),
            figures.plot_esd_grid(esds, table, out / "esd.png", title),
            figures.plot_alpha(table, out / "alpha.png", f"power-law alpha of each layer's ESD tail ({title})")]


def one_blas_thread():
    """A context that limits OpenBLAS (numpy's, and scipy's, which jax's CPU SVD and Cholesky call) to one thread.

    The host's decompositions and Gram matrices are small (at most 1536 x 1536); with XLA's threads beside them,
    two BLAS threads on two cores thrash (one 384 x 1536 SVD: 71 ms on one thread, 1.5 s on two under load).
    """
    import scipy.linalg  # noqa: F401  loads the LAPACK behind jax's CPU linalg, so the limit reaches it

    return threadpool_limits(1, user_api="blas")


def study(target: Target, plan: dict, out: Path, progress=print) -> dict:
    """Run every (method, settings) of `plan`, write figures into `out`, return the compress.json dict."""
    with one_blas_thread():
        return _study(target, plan, out, progress)


def _study(target: Target, plan: dict, out: Path, progress=print) -> dict:
    t0 = time.perf_counter()
    base = target.evaluate(target.params)
    progress(f"uncompressed: {target.metric} = {base[target.metric]:.5f}")
    stats = target.calibrate() if any(methods.get(m).needs_calibration for m in plan) else None
    model = target.second_order() if target.second_order is not None else None
    rows = []
    for method, settings in plan.items():
        def report(row, method=method):
            progress(f"{method:10s} {row['setting']:24s} kept {row['kept_fraction']:.3f}  "
                     f"bits {row['bits_per_weight']:6.2f}  {target.metric} {row[target.metric]:.5f}")

        for row in sweep.run(target.params, method, settings, target.evaluate, stats, report, target.groups,
                             target.rank_multiple, None if model is None else model.predict):
            row["change"] = row[target.metric] - base[target.metric]
            if model is not None:
                row["delta_loss"] = row["change"]
            rows.append(row)
    esds = layer_esds(target.params, target.groups)
    table = spectra_table(target.params, target.groups, esds)
    measured_on = target.info.get("eval_set")
    names = [figures.plot_tradeoff(rows, target.metric, base[target.metric], out / "tradeoff.png",
                                   f"{target.name}: {target.metric} against compression"
                                   + (f"\n(measured on eval set {measured_on})" if measured_on else ""), target.unit)]
    names += write_spectra_figures(esds, table, out, target.name)
    prediction = {}
    if model is not None:
        agreement = {**taylor.agreement(rows, target.small_change), "hessian_diagonal": model.diagonal}
        prediction = {"prediction": agreement}
        names.append(figures.plot_predicted(rows, agreement, out / "predicted_vs_measured.png",
                                            f"{target.name}: loss change predicted (g^T d + d^T H d / 2) "
                                            f"vs measured" + (f" on {measured_on}" if measured_on else "")))
    return {
        "target": target.name,
        **target.info,
        "metric": target.metric,
        "scope": "linear layers outside the embeddings; kept_fraction is over their dense weights",
        "base": base,
        "rows": rows,
        "spectra": table,
        **prediction,
        "figures": names,
        "seconds": time.perf_counter() - t0,
    }
