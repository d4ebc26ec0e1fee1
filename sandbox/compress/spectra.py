"""Weight spectra: the empirical spectral density (ESD) of W^T W and its heavy-tail analysis.

For W of shape (M, N) the ESD is the set of eigenvalues lambda_i = s_i^2 of W^T W. Heavy-tailed
self-regularization (Martin & Mahoney; WeightWatcher) fits the tail with a power law
p(lambda) ~ lambda^{-alpha} for lambda >= x_min by the Clauset-Shalizi-Newman method:
for each candidate x_min the maximum-likelihood exponent is
    alpha = 1 + n / sum_{lambda_i >= x_min} ln(lambda_i / x_min),
and x_min is the candidate whose fitted CDF 1 - (lambda/x_min)^{1-alpha} has the smallest
Kolmogorov-Smirnov distance to the empirical tail CDF. Trained layers give alpha ~ 2-4; a
random (Gaussian) matrix has no power-law tail and gives a large alpha.

A random matrix with iid entries of variance sigma^2 has W^T W eigenvalues inside the
Marchenko-Pastur bulk, whose upper edge is lambda_+ = sigma^2 (sqrt(M) + sqrt(N))^2; eigenvalues
above it are structure learned beyond noise.
"""

import numpy as np

MIN_TAIL = 10  # fewest eigenvalues a power-law tail may hold (WeightWatcher fits need a tail)
TRUSTED_TAIL = 50  # CSN's advice: below ~50 points a power law cannot be told from other heavy tails
MAX_KS = 0.1  # a KS distance above this between the tail and its fitted law: the law does not describe it
ALPHA_RANGE = (2.0, 6.0)  # WeightWatcher's 'well-trained' band


def fit_flags(fit: dict) -> list[str]:
    """Why a power-law fit ({"alpha", "ks", "n_tail"}) should not be read at face value; [] if none.

    The MLE's standard error is (alpha - 1) / sqrt(n_tail) (Clauset, Shalizi, Newman 2009, eq. 3.2)."""
    if not np.isfinite(fit["alpha"]):
        return ["no power-law tail could be fitted"]
    flags = []
    if fit["n_tail"] < TRUSTED_TAIL:
        flags.append(f"tail of {fit['n_tail']} eigenvalues (< {TRUSTED_TAIL}): alpha +- "
                     f"{(fit['alpha'] - 1) / np.sqrt(fit['n_tail']):.2f}")
    if fit["ks"] > MAX_KS:
        flags.append(f"KS distance {fit['ks']:.3f} > {MAX_KS}: a poor fit")
    if not ALPHA_RANGE[0] <= fit["alpha"] <= ALPHA_RANGE[1]:
        flags.append(f"alpha outside {ALPHA_RANGE[0]:g}..{ALPHA_RANGE[1]:g}")
    return flags


def esd(w_MxN) -> np.ndarray:
    """Eigenvalues of W^T W, ascending: the squared singular values of W (zeros for rank deficit dropped)."""
    s = np.linalg.svd(np.asarray(w_MxN, np.float64), compute_uv=False)
    return np.sort(s**2)


def fit_power_law(evals, min_tail: int = MIN_TAIL) -> dict:
    """Clauset-Shalizi-Newman power-law fit of the largest eigenvalues: {"alpha", "xmin", "ks", "n_tail"}.

    Every eigenvalue that leaves at least `min_tail` points above it is a candidate x_min; for each,
    alpha is the continuous MLE and D the KS distance max_x |S_n(x) - P(x)| on the tail (checked on
    both sides of each empirical CDF step). The fit with the smallest D wins.
    """
    x = np.sort(np.asarray(evals, np.float64))
    x = x[x > 0]
    n = len(x)
    if n < min_tail + 1:
        return {"alpha": float("nan"), "xmin": float("nan"), "ks": float("nan"), "n_tail": 0}
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = sum_{j>=i} ln x_j
    cand = np.arange(n - min_tail + 1)
    n_tail = n - cand
    denom = suffix[cand] - n_tail * logs[cand]
    alpha = np.where(denom > 0, 1.0 + n_tail / np.maximum(denom, 1e-300), np.inf)
    j = np.arange(n)
    in_tail_CxN = j[None, :] >= cand[:, None]
    ratio = np.exp(np.clip(logs[None, :] - logs[cand][:, None], 0.0, None))
    with np.errstate(over="ignore", invalid="ignore"):
        fit = 1.0 - ratio ** (1.0 - alpha[:, None])
    below = (j[None, :] - cand[:, None]) / n_tail[:, None]  # empirical CDF just before x_j
    above = below + 1.0 / n_tail[:, None]
    dist = np.maximum(np.abs(fit - below), np.abs(fit - above))
    ks = np.where(np.isfinite(alpha), np.max(np.where(in_tail_CxN, dist, 0.0), axis=1), np.inf)
    best = int(np.argmin(ks))
    return {"alpha": float(alpha[best]), "xmin": float(x[best]), "ks": float(ks[best]), "n_tail": int(n_tail[best])}


def mp_edge(w_MxN) -> float:
    """Marchenko-Pastur upper edge sigma^2 (sqrt(M) + sqrt(N))^2 of W^T W for iid entries of W's variance."""
    w = np.asarray(w_MxN, np.float64)
    m, n = w.shape
    return float(np.var(w) * (np.sqrt(m) + np.sqrt(n)) ** 2)


def layer_spectrum(w_MxN, evals=None) -> dict:
    """Spectral summary of one matrix: norms, stable rank, power-law fit and MP comparison (`evals`: its `esd`)."""
    evals = esd(w_MxN) if evals is None else evals
    fit = fit_power_law(evals)
    edge = mp_edge(w_MxN)
    lam_max = float(evals[-1])
    return {
        "shape": list(np.shape(w_MxN)),
        "spectral_norm": float(np.sqrt(lam_max)),
        "frobenius_norm": float(np.sqrt(evals.sum())),
        "stable_rank": float(evals.sum() / lam_max),
        **fit,
        "alpha_se": float((fit["alpha"] - 1) / np.sqrt(fit["n_tail"])) if fit["n_tail"] else float("nan"),
        "fit_flags": fit_flags(fit),
        "alpha_weighted": float(fit["alpha"] * np.log10(lam_max)),
        "mp_edge": edge,
        "n_above_mp": int(np.sum(evals > edge)),
        "lambda_max_over_mp": lam_max / edge,
    }

