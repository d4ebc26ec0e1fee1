"""Bayes made concrete: Laplace posteriors on the curvature operators, predictives, evidence, calibration.

    post = bayes.laplace(model_fn, params, (X, y), likelihood="classification", structure="kron",
                         subset=["layer_2"], prior_precision=1.0)
    probs_NxC = post.predictive(X_test, method="probit")   # or "mc" with key=..., num_samples=...
    lml = post.log_marginal_likelihood()
    post = post.optimize_prior_precision()
    bayes.ece(probs_NxC, labels_N), bayes.nll(...), bayes.brier(...)
"""

from sandbox.bayes.calibration import (
    Reliability,
    brier,
    ece,
    fit_temperature,
    mce,
    nll,
    nll_per_point,
    paired_difference,
    reliability,
)
from sandbox.bayes.evidence import evidence_curve, log_marginal_likelihood, shifted, slq_logdet
from sandbox.bayes.figures import evidence_figure, reliability_diagram
from sandbox.bayes.last_layer import head_predictive, laplace_head, tune_prior
from sandbox.bayes.posterior import CURVATURES, STRUCTURES, Posterior, Subset, curvature_operator, laplace
from sandbox.bayes.predictive import glm_moments, probit

__all__ = [
    "CURVATURES", "STRUCTURES", "Posterior", "Reliability", "Subset", "brier", "curvature_operator", "ece",
    "evidence_curve", "evidence_figure", "fit_temperature", "glm_moments", "head_predictive", "laplace", "laplace_head",
    "log_marginal_likelihood", "mce", "nll", "nll_per_point", "paired_difference", "probit", "reliability",
    "reliability_diagram", "shifted", "slq_logdet", "tune_prior",
]
