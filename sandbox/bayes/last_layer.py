"""Last-layer Laplace on given features: a softmax head z = phi W (W: D x C), everything else fixed.

For a linear head the Jacobian is J = phi^T (x) I_C, so the curvature needs only the features and
the probabilities, never a per-example Jacobian: the GGN is sum_n (phi phi^T) (x) Lambda_n, its
diagonal sum_n phi^2 (x) diag(Lambda_n), its KFAC (phi^T phi / N) (x) sum_n Lambda_n (exact
factors for this layer). The predictive variance per class is then a few matrix products:
kron: diag(J Sigma J^T) = (((phi Qa)^2) (1 / (La (x) Lb + delta))) (Qb^2)^T; diag: phi^2 (1 / (h + delta)).
A vocabulary-sized head (D x V) costs D^2 + V^2 numbers (kron) or D V (diag), where the full
posterior would need (D V)^2.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import losses
from sandbox.bayes import calibration, kfac, posterior, predictive, structures
from sandbox.errors import SandboxError


def _head(params, phi_NxD):
    return phi_NxD @ params["w"]


def laplace_head(phi_NxD, labels_N, w_DxC, *, structure: str = "kron", prior_precision=1.0,
                 chunk_size: int = 4096) -> posterior.Posterior:
    """The Laplace posterior of the head W at the MAP w_DxC (structure 'kron' or 'diag'; GGN)."""
    if structure not in ("kron", "diag"):
        raise SandboxError(f"the last-layer head takes structure 'kron' or 'diag', got {structure!r}")
    phi_NxD, labels_N, w_DxC = jnp.asarray(phi_NxD), jnp.asarray(labels_N), jnp.asarray(w_DxC)
    if phi_NxD.ndim != 2 or w_DxC.shape[0] != phi_NxD.shape[1] or labels_N.shape != phi_NxD.shape[:1]:
        raise SandboxError(f"features (N x D) {phi_NxD.shape}, labels (N,) {labels_N.shape} and head (D x C) "
                           f"{w_DxC.shape} do not fit together")
    params = {"w": w_DxC}
    for leaf in (phi_NxD, w_DxC):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise SandboxError("the features or the head hold NaN or inf")
    sub = posterior.Subset.of(params, None)
    posterior.prior_vector(prior_precision, sub.group_S, 1, structure)
    loss, a_DxD, b_CxC, h_DxC = _sums(phi_NxD, labels_N, w_DxC, chunk_size)
    if structure == "kron":
        curv = structures.Kron((structures.KronBlock.of(a_DxD / phi_NxD.shape[0], b_CxC, 0),))
    else:
        curv = structures.Diag(h_DxC.ravel())
    return posterior.Posterior(_head, params, sub, "classification", 1.0, structure, curv, prior_precision,
                               float(loss), int(phi_NxD.shape[0]))


@jax.jit
def _moments(phi_NxD, labels_N, w_DxC):
    z = phi_NxD @ w_DxC
    p = jax.nn.softmax(z, -1)
    a, b = kfac.softmax_head_factors(phi_NxD, p)
    h = phi_NxD.T ** 2 @ (p - p ** 2)
    return jnp.sum(losses.cross_entropy(z, labels_N)), a * phi_NxD.shape[0], b, h


def _sums(phi, labels, w, chunk_size):
    """(loss, sum phi phi^T, sum Lambda, sum phi^2 (x) diag Lambda) over chunks of rows."""
    totals = None
    for start in range(0, phi.shape[0], chunk_size):
        part = _moments(phi[start:start + chunk_size], labels[start:start + chunk_size], w)
        totals = part if totals is None else tuple(t + q for t, q in zip(totals, part))
    return totals


def head_predictive(post: posterior.Posterior, phi_NxD, chunk_size: int = 4096):
    """(probit probabilities N x C, MAP logits N x C) of the head posterior on features phi."""
    delta_P = post.prior_vector()
    outs = [_head_probit(post, delta_P, phi_NxD[s:s + chunk_size]) for s in range(0, phi_NxD.shape[0], chunk_size)]
    return jnp.concatenate([o[0] for o in outs]), jnp.concatenate([o[1] for o in outs])


@jax.jit
def _head_probit(post, delta_P, phi_NxD):
    z_NxC = phi_NxD @ post.params["w"]
    return predictive.probit(z_NxC, post.curv.head_variance(delta_P, phi_NxD)), z_NxC


PRIOR_GRID = np.logspace(-4, 4, 100)  # laplace-torch's gridsearch grid: 0.08 decades a step


def tune_prior(post: posterior.Posterior, phi_NxD, labels_N, grid=None) -> posterior.Posterior:
    """The head posterior at the prior precision of `grid` with the lowest held-out NLL (large delta -> MAP).

    The default grid is laplace-torch's `optimize_prior_precision(method="gridsearch")`: 100 values log-spaced
    on [1e-4, 1e4] (a step of 0.08 decades). A half-decade grid moves the choice by up to a factor 1.8, enough to
    put the test NLL on the wrong side of the MAP's when the held-out curve is flat near its minimum.
    """
    grid = PRIOR_GRID if grid is None else grid
    val_nll = [float(calibration.nll(head_predictive(post.replace(prior_precision=float(d)), phi_NxD)[0], labels_N))
               for d in grid]
    return post.replace(prior_precision=float(grid[int(np.argmin(val_nll))]))
