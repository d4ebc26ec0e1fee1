"""RTN quantization and float casts: measured error against the step/sqrt(12) prediction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.compress import quantize
from sandbox.errors import SandboxError

W = jax.random.normal(jax.random.PRNGKey(0), (256, 128))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_gaussian_error_matches_uniform_rounding_prediction(bits, symmetric, granularity):
    out = quantize.quantize(W, bits, symmetric, granularity, group_size=32)
    err = out["error"]
    # analytic prediction from the steps alone: Delta / sqrt(12) per entry
    m, n = W.shape
    g = {"tensor": W.reshape(1, -1, 1), "channel": W.reshape(1, m, n), "group": W.reshape(m // 32, 32, n)}[granularity]
    levels = 2 ** (bits - 1) - 1 if symmetric else 2**bits - 1
    span = jnp.max(jnp.abs(g), axis=1) if symmetric else jnp.max(g, axis=1) - jnp.min(g, axis=1)
    step = span / levels
    predicted = jnp.sqrt(jnp.mean(jnp.broadcast_to(step[:, None, :], g.shape) ** 2) / 12)
    np.testing.assert_allclose(err["predicted_rmse"], predicted, rtol=1e-5)
    assert abs(err["rmse"] / predicted - 1) < 0.10
    assert err["max_abs"] <= jnp.max(step) / 2 * (1 + 1e-5)
    q = out["q"]
    assert int(q.min()) >= (-levels if symmetric else 0) and int(q.max()) <= (levels if symmetric else levels)


def test_finer_groups_and_more_bits_lose_less():
    rmse = {
        (b, gran): float(quantize.quantize(W, b, True, gran, 32)["error"]["rmse"])
        for b in (4, 8)
        for gran in ("tensor", "channel", "group")
    }
    for b in (4, 8):
        assert rmse[(b, "group")] < rmse[(b, "channel")] < rmse[(b, "tensor")]
    assert rmse[(8, "tensor")] < rmse[(4, "group")] / 8


def test_bits_per_weight_counts_scales():
    out = quantize.quantize(W, 4, True, "group", group_size=32)
    assert out["bits_per_weight"] == pytest.approx(4 + 16 / 32)
    out = quantize.quantize(W, 8, False, "channel")
    assert out["bits_per_weight"] == pytest.approx(8 + (16 + 8) / 256)


@pytest.mark.parametrize("dtype,frac_bits", [("bfloat16", 7), ("float16", 10)])
def test_casts_stay_within_unit_roundoff(dtype, frac_bits):
    out = quantize.cast(W, dtype)
    u = 2.0 ** -(frac_bits + 1)
    assert out["error"]["unit_roundoff"] == pytest.approx(u)
    assert float(out["error"]["max_rel"]) <= u * (1 + 1e-6)
    assert float(out["error"]["max_rel"]) > u / 2  # some entry really rounds by about u
    assert out["error"]["overflow"] == 0


def test_float16_overflow_is_counted():
    assert quantize.cast(jnp.array([[1e5, 1.0]]), "float16")["error"]["overflow"] == 1


def test_bad_bits_group_and_dtype_are_clear_errors():
    with pytest.raises(SandboxError, match="choose one of 4, 8"):
        quantize.quantize(W, bits=3)
    with pytest.raises(SandboxError, match="does not divide the input dimension 256"):
        quantize.quantize(W, 8, True, "group", group_size=48)
    with pytest.raises(SandboxError, match="granularity"):
        quantize.quantize(W, 8, True, "row")
    with pytest.raises(SandboxError, match="bfloat16, float16"):
        quantize.cast(W, "float8")
