"""Calibration of predicted probabilities: is a prediction made with confidence c right a fraction c of the time?

Confidence c_n = max_k p_nk, correctness a_n = [argmax_k p_nk = y_n]. Binning the confidences,
    ECE = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|,   MCE = max_b |acc(B_b) - conf(B_b)|,
with equal-width bins on [0, 1] or equal-mass bins (each holds ~N / num_bins predictions).
NLL = -mean log p_{n, y_n}; Brier = mean_n sum_k (p_nk - [k = y_n])^2. Temperature scaling
(Guo et al. 2017) divides the logits by the T > 0 that minimizes the NLL on held-out data.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sandbox.errors import SandboxError
from sandbox.optim.minimize import minimize

BINNINGS = ("width", "mass")


class Reliability(NamedTuple):
    confidence_B: jax.Array  # mean confidence per bin
    accuracy_B: jax.Array    # accuracy per bin
    count_B: jax.Array       # predictions per bin
    edges_B1: jax.Array      # bin edges (num_bins + 1)


def _check(probs_NxC, labels_N):
    probs_NxC, labels_N = jnp.asarray(probs_NxC), jnp.asarray(labels_N)
    if probs_NxC.ndim != 2 or labels_N.shape != probs_NxC.shape[:1]:
        raise SandboxError(f"calibration needs probs (N x C) and labels (N,), got {probs_NxC.shape} and "
                           f"{labels_N.shape}")
    return probs_NxC, labels_N


def reliability(probs_NxC, labels_N, num_bins: int = 15, binning: str = "width") -> Reliability:
    """Per-bin mean confidence, accuracy and count (empty bins have count 0)."""
    if binning not in BINNINGS:
        raise SandboxError(f"unknown binning {binning!r}; valid: 'width' (equal-width), 'mass' (equal-mass)")
    if num_bins < 1:
        raise SandboxError(f"num_bins must be >= 1, got {num_bins}")
    return _reliability(*_check(probs_NxC, labels_N), num_bins, binning)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _reliability(probs_NxC, labels_N, num_bins, binning):
    conf_N = jnp.max(probs_NxC, -1)
    correct_N = (jnp.argmax(probs_NxC, -1) == labels_N).astype(conf_N.dtype)
    if binning == "width":  # bin b holds confidences in (b / B, (b + 1) / B]
        edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=conf_N.dtype)
        bin_N = jnp.clip(jnp.searchsorted(edges, conf_N, side="left") - 1, 0, num_bins - 1)
    else:  # equal-mass: by rank, so ties cannot empty a bin
        edges = jnp.quantile(conf_N, jnp.linspace(0.0, 1.0, num_bins + 1, dtype=conf_N.dtype))
        bin_N = jnp.minimum(jnp.argsort(jnp.argsort(conf_N)) * num_bins // conf_N.size, num_bins - 1)
    count = jax.ops.segment_sum(jnp.ones_like(conf_N), bin_N, num_bins)
    safe = jnp.maximum(count, 1)
    return Reliability(jax.ops.segment_sum(conf_N, bin_N, num_bins) / safe,
                       jax.ops.segment_sum(correct_N, bin_N, num_bins) / safe, count, edges)


def ece(probs_NxC, labels_N, num_bins: int = 15, binning: str = "width"):
    """Expected calibration error: bin-mass-weighted mean |accuracy - confidence|."""
    r = reliability(probs_NxC, labels_N, num_bins, binning)
    return jnp.sum(r.count_B * jnp.abs(r.accuracy_B - r.confidence_B)) / jnp.sum(r.count_B)


def mce(probs_NxC, labels_N, num_bins: int = 15, binning: str = "width"):
    """Maximum calibration error over the non-empty bins."""
    r = reliability(probs_NxC, labels_N, num_bins, binning)
    return jnp.max(jnp.where(r.count_B > 0, jnp.abs(r.accuracy_B - r.confidence_B), 0.0))


def nll_per_point(probs_NxC, labels_N, eps: float = 1e-12):
    """-log p_{n, y_n} for every point n (probabilities floored at eps)."""
    probs_NxC, labels_N = _check(probs_NxC, labels_N)
    p_N = jnp.take_along_axis(probs_NxC, labels_N[:, None], axis=-1)[:, 0]
    return -jnp.log(jnp.maximum(p_N, eps))


def nll(probs_NxC, labels_N, eps: float = 1e-12):
    """-mean_n log p_{n, y_n} (probabilities floored at eps)."""
    return jnp.mean(nll_per_point(probs_NxC, labels_N, eps))


def paired_difference(a_N, b_N) -> tuple:
    """(mean, standard error) of d_n = a_n - b_n: two methods scored on the same points, so the noise of
    the test sample cancels in d (SE = std(d, ddof=1) / sqrt(N))."""
    d_N = np.asarray(a_N, np.float64) - np.asarray(b_N, np.float64)
    return float(np.mean(d_N)), float(np.std(d_N, ddof=1) / np.sqrt(d_N.size))


def brier(probs_NxC, labels_N):
    """mean_n sum_k (p_nk - onehot(y_n)_k)^2."""
    probs_NxC, labels_N = _check(probs_NxC, labels_N)
    onehot = jax.nn.one_hot(labels_N, probs_NxC.shape[-1], dtype=probs_NxC.dtype)
    return jnp.mean(jnp.sum((probs_NxC - onehot) ** 2, -1))


def fit_temperature(logits_NxC, labels_N, steps: int = 300, learning_rate: float = 0.05):
    """T > 0 minimizing the mean NLL of softmax(z / T) on held-out (logits, labels); Adam on log T, jitted."""
    logits_NxC, labels_N = jnp.asarray(logits_NxC), jnp.asarray(labels_N)
    _check(logits_NxC, labels_N)
    return _fit_temperature(logits_NxC, labels_N, steps, learning_rate)


@jax.jit
def _nll_at(log_t, logits_NxC, labels_N):
    logp = jax.nn.log_softmax(logits_NxC / jnp.exp(log_t), -1)
    return -jnp.mean(jnp.take_along_axis(logp, labels_N[:, None], -1))


def _fit_temperature(logits_NxC, labels_N, steps, learning_rate):
    opt = optax.adam(learning_rate)

    @jax.jit
    def run(log_t):
        return minimize(lambda x: _nll_at(x, logits_NxC, labels_N), log_t, opt, steps)[0]

    return jnp.exp(run(jnp.zeros((), logits_NxC.dtype)))


def bootstrap(probs_NxC, labels_N, key, num_resamples: int = 200, num_bins: int = 15) -> dict:
    """Standard errors of ECE, NLL, Brier and accuracy by the bootstrap: the std of each metric over
    `num_resamples` resamples of the N points drawn with replacement (Efron). The points are tokens of
    a few windows, not independent draws, so this is a floor on the error, not its whole size."""
    probs_NxC, labels_N = _check(probs_NxC, labels_N)
    n = labels_N.shape[0]

    def once(k):
        idx_N = jax.random.randint(k, (n,), 0, n)
        p, y = probs_NxC[idx_N], labels_N[idx_N]
        return jnp.stack([ece(p, y, num_bins), nll(p, y), brier(p, y), jnp.mean(jnp.argmax(p, -1) == y)])

    values_RxM = jax.lax.map(once, jax.random.split(key, num_resamples))
    return dict(zip(("ece", "nll", "brier", "accuracy"), np.asarray(values_RxM, np.float64).std(axis=0, ddof=1)))
