"""Weight spectra: power-law fits on synthetic heavy-tailed and Gaussian matrices, norms, MP edge."""

import numpy as np
import pytest

from sandbox.compress import spectra


def _pareto_matrix(mu, shape, seed):
    rng = np.random.default_rng(seed)
    return (rng.pareto(mu, size=shape) + 1.0) * rng.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("mu", [0.5, 1.0, 1.5])
def test_power_law_fit_recovers_heavy_tail_exponent(mu):
    """Entries with tail index mu < 2 give an ESD tail with alpha = 1 + mu/2 (Martin & Mahoney);
    finite size biases alpha upward as mu nears 2, hence the tolerance."""
    fit = spectra.fit_power_law(spectra.esd(_pareto_matrix(mu, (400, 800), seed=int(10 * mu))))
    assert abs(fit["alpha"] - (1 + mu / 2)) < 0.15
    assert fit["n_tail"] >= spectra.MIN_TAIL


def test_gaussian_matrix_has_no_power_law_tail():
    w = np.random.default_rng(0).normal(size=(300, 600))
    info = spectra.layer_spectrum(w)
    assert info["alpha"] > 6
    # its top eigenvalue sits at the Marchenko-Pastur edge sigma^2 (sqrt(M) + sqrt(N))^2
    assert abs(info["lambda_max_over_mp"] - 1) < 0.05


def test_csn_fit_on_exact_pareto_sample():
    """On iid Pareto samples the CSN estimator finds the exponent and the true xmin region."""
    rng = np.random.default_rng(1)
    x = (1 - rng.random(2000)) ** (-1 / 1.5)  # p(x) ~ x^-2.5 for x >= 1
    fit = spectra.fit_power_law(x)
    assert abs(fit["alpha"] - 2.5) < 0.1 and fit["xmin"] < 3
    assert fit["ks"] < 0.05


def test_norms_and_stable_rank():
    w = np.random.default_rng(2).normal(size=(20, 30))
    s = np.linalg.svd(w, compute_uv=False)
    info = spectra.layer_spectrum(w)
    assert info["spectral_norm"] == pytest.approx(s[0])
    assert info["stable_rank"] == pytest.approx(np.sum(s**2) / s[0] ** 2)
    np.testing.assert_allclose(spectra.esd(w), np.sort(s**2))
    assert info["mp_edge"] == pytest.approx(np.var(w) * (np.sqrt(20) + np.sqrt(30)) ** 2)


def test_fit_flags_say_why_an_alpha_is_not_to_be_read_at_face_value():
    assert spectra.fit_flags({"alpha": 3.0, "ks": 0.05, "n_tail": 80}) == []
    short = spectra.fit_flags({"alpha": 1.5, "ks": 0.2, "n_tail": 25})
    assert short == ["tail of 25 eigenvalues (< 50): alpha +- 0.10", "KS distance 0.200 > 0.1: a poor fit",
                     "alpha outside 2..6"]
    assert spectra.fit_flags({"alpha": float("nan"), "ks": float("nan"), "n_tail": 0}) == [
        "no power-law tail could be fitted"]
    rng = np.random.default_rng(0)
    info = spectra.layer_spectrum(rng.standard_normal((64, 32)))  # 32 eigenvalues: never a trusted tail
    assert info["n_tail"] < 50 and any("eigenvalues (< 50)" in f for f in info["fit_flags"])
    assert info["alpha_se"] == pytest.approx((info["alpha"] - 1) / np.sqrt(info["n_tail"]))
