"""sandbox.bayes equals laplace-torch (fixture written by benchmarks/laplace_reference.py --fixture, float64).

Same MLP weights and data in both libraries; subset all / last layer x full / diag / kron, and a
full regression posterior: posterior precision, GLM predictive (probit) and log marginal
likelihood at two prior precisions, to 1e-6 relative.
"""


import jax
import numpy as np
import pytest
from paths import FIXTURES

from sandbox import bayes
from sandbox.nn import plain_mlp

FIXTURE = np.load(FIXTURES / "laplace_reference.npz")
PRIORS = (1.0, 0.3)  # as in the benchmark script


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def params(prefix=""):
    out = {}
    for name in FIXTURE.files:
        if name.startswith(prefix + "params/"):
            _, layer, leaf = name[len(prefix):].split("/")
            out.setdefault(layer, {})[leaf] = np.asarray(FIXTURE[name])
    return out


def model_fn(p, x):
    return plain_mlp.apply(p, x, "tanh")


def close(ours, ref, rtol=1e-6):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale = max(np.max(np.abs(ref)), 1e-300)
    assert np.max(np.abs(ours - ref)) <= rtol * scale, np.max(np.abs(ours - ref)) / scale


@pytest.mark.parametrize("subset", ["all", "last_layer"])
@pytest.mark.parametrize("structure", ["full", "diag", "kron"])
def test_classification_matches_laplace_torch(subset, structure):
    tag = f"classification/{subset}/{structure}"
    post = bayes.laplace(model_fn, params(), (FIXTURE["x"], FIXTURE["y"]), structure=structure,
                         subset=None if subset == "all" else ["layer_2"])
    for j, prior in enumerate(PRIORS):
        at = post.replace(prior_precision=prior)
        close(at.precision(), FIXTURE[f"{tag}/precision{j}"])
        close(at.log_marginal_likelihood(), FIXTURE[f"{tag}/lml{j}"])
        close(at.predictive(FIXTURE["x_test"], method="probit"), FIXTURE[f"{tag}/probit{j}"])


def test_regression_matches_laplace_torch():
    post = bayes.laplace(model_fn, params("regression/"), (FIXTURE["regression/x"], FIXTURE["regression/y"]),
                         likelihood="regression", sigma_noise=0.5)
    for j, prior in enumerate(PRIORS):
        at = post.replace(prior_precision=prior)
        close(at.precision(), FIXTURE[f"regression/precision{j}"])
        close(at.log_marginal_likelihood(), FIXTURE[f"regression/lml{j}"])
        mean, var = at.predictive(FIXTURE["x_test"], method="glm")
        close(mean, FIXTURE[f"regression/mean{j}"])
        close(var - 0.5 ** 2, FIXTURE[f"regression/var{j}"])  # laplace-torch's variance is f's, without noise
