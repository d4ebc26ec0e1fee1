"""The loss change of a compression, predicted before it is measured: the second-order Taylor model.

For the whole model's weight change d = theta' - theta (every compressed layer at once),
    L(theta + d) - L(theta) = g^T d + 1/2 d^T H d + O(||d||^3)      (the model of Optimal Brain Surgeon,
                                                                     Hassibi & Stork 1993)
    L(theta + d) - L(theta) ~ g^T d + 1/2 sum_i H_ii d_i^2           (Optimal Brain Damage's diagonal model,
                                                                     LeCun, Denker & Solla 1990)
with g and H the gradient and Hessian of the loss at the uncompressed theta, on the same batches the change
is measured on. g is computed once; each setting costs one exact Hessian-vector product
(`sandbox.curvature.hessian`); diag(H) once, exactly (one matvec per coordinate: small models) or by
Hutchinson's estimate E[z * H z] with Rademacher z. A trained model sits near, not at, a minimum of the
eval loss, so the linear term stays. The quadratic term is exact for a quadratic loss; the error of
the prediction is third order in d, so its relative error goes to zero with the change.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import curvature


@dataclasses.dataclass(frozen=True)
class Taylor:
    """g, diag(H) and H v of a loss at theta (flat vectors in `op.layout`'s order)."""

    op: curvature.LinearOperator  # the exact Hessian
    theta_N: jax.Array
    grad_N: jax.Array
    diag_N: jax.Array
    diagonal: str  # how diag(H) was computed

    def predict(self, params) -> dict:
        """{"predicted_delta_loss": g^T d + d^T H d / 2, "predicted_delta_loss_diag": g^T d + sum H_ii d_i^2 / 2}."""
        d_N = self.op.ravel(params) - self.theta_N
        linear = float(self.grad_N @ d_N)
        return {"predicted_delta_loss": linear + 0.5 * float(d_N @ self.op.matvec(d_N)),
                "predicted_delta_loss_diag": linear + 0.5 * float(self.diag_N @ d_N**2)}


def expand(loss_fn, params, batches: list, *, diag_probes: int | None = None, key=None) -> Taylor:
    """The Taylor model of the mean of `loss_fn(params, batch)` over `batches`; diag(H) exact when
    diag_probes is None, else Hutchinson's with that many probes and `key`."""
    op = curvature.hessian(loss_fn, params, batches)
    grad = jax.jit(jax.grad(loss_fn))
    grad_N = sum(op.ravel(grad(params, b)) for b in batches) / len(batches)
    if diag_probes is None:
        diag_N, how = jnp.diag(curvature.dense(op)), "exact"
    else:
        diag_N = op.ravel(curvature.diagonal(op, key=key, num_matvecs=diag_probes))
        how = f"Hutchinson, {diag_probes} Rademacher probes"
    return Taylor(op, op.ravel(params), grad_N, diag_N, how)


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties get their mean rank)."""
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float(rx @ ry / np.sqrt((rx @ rx) * (ry @ ry)))


def _ranks(x):
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, tie, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(tie, weights=ranks) / counts)[tie]


def agreement(rows: list[dict], small: float) -> dict:
    """How well the predictions rank and match the measured changes of sweep rows: Spearman over every
    row, and the median relative error |predicted - measured| / |measured| over the rows whose measured
    change is small (0 < |measured| <= small), where the quadratic model is meant to hold."""
    measured = np.array([r["delta_loss"] for r in rows])
    out = {"rows": len(rows), "small_threshold": small}
    near = (np.abs(measured) <= small) & (measured != 0)
    out["small_rows"] = int(near.sum())
    for key in ("predicted_delta_loss", "predicted_delta_loss_diag"):
        predicted = np.array([r[key] for r in rows])
        name = key.removeprefix("predicted_delta_loss").replace("_", "")
        suffix = f"_{name}" if name else ""
        out["spearman" + suffix] = spearman(predicted, measured) if len(rows) > 1 else float("nan")
        rel = np.abs(predicted[near] - measured[near]) / np.abs(measured[near])
        out["small_median_rel_error" + suffix] = float(np.median(rel)) if near.any() else float("nan")
    return out
