"""Whole-model compression: factorized layers in `apply`, calibration statistics, sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.compress import methods, sweep
from sandbox.compress import model as cmodel
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig
from sandbox.nn.linear import dense

CFG = ModelConfig(vocab_size=32, seq_len=8, d_model=16, n_layers=2, n_heads=2, d_ff=32)
PARAMS = transformer.init(jax.random.PRNGKey(0), CFG)
TOKENS = jax.random.randint(jax.random.PRNGKey(1), (3, 8), 0, 32)
APPLY = jax.jit(transformer.apply, static_argnums=2)


def test_finds_every_block_linear_layer():
    layers = cmodel.linear_layers(PARAMS)
    assert sorted(layers) == sorted(
        f"block_{i}/{name}" for i in range(2) for name in ("attn/q", "attn/k", "attn/v", "attn/o", "mlp/up", "mlp/down")
    )


def test_factorized_apply_equals_dense_truncated_matrix():
    """The factorized model's logits equal those of the model whose W is the dense u v."""
    decs = methods.get("svd").prepare(cmodel.linear_layers(PARAMS), None)
    small, info = sweep.compress(PARAMS, "svd", {"rank": 3}, decs)
    thin = cmodel.linear_layers(small)
    assert all(set(p) == {"u", "v"} and p["u"].shape[1] == 3 for p in thin.values())
    dense_equiv = cmodel.replace_layers(PARAMS, {k: {"w": p["u"] @ p["v"]} for k, p in thin.items()})
    np.testing.assert_allclose(
        APPLY(small, TOKENS, CFG), APPLY(dense_equiv, TOKENS, CFG), rtol=1e-5, atol=1e-6
    )
    expected = sum(3 * sum(np.shape(p["w"])) for p in cmodel.linear_layers(PARAMS).values())
    assert info["kept_fraction"] == pytest.approx(expected / cmodel.param_count(cmodel.linear_layers(PARAMS)))


def test_calibration_records_the_inputs_gram_without_padding():
    params = {"a": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}, "c": {"w": jnp.ones((3, 1))}}
    x_BxLx2 = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 2))
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    forward = lambda p, x: dense(p["c"], jnp.tanh(dense(p["a"], x)))
    stats = cmodel.calibrate(forward, params, [x_BxLx2], [mask])
    xa = np.asarray(x_BxLx2)[mask]
    np.testing.assert_allclose(stats["a"]["gram"], xa.T @ xa, rtol=1e-6)
    np.testing.assert_allclose(stats["a"]["abs_mean"], np.abs(xa).mean(0), rtol=1e-6)
    xc = np.tanh(xa @ np.asarray(params["a"]["w"]) + 1)
    np.testing.assert_allclose(stats["c"]["gram"], xc.T @ xc, rtol=1e-5)
    assert stats["c"]["count"] == 5


def test_activation_aware_svd_loses_less_on_the_lm():
    """On the calibration data itself, whitened SVD's logits move less than plain SVD's at equal rank."""
    stats = cmodel.calibrate(lambda p, t: transformer.apply(p, t, CFG), PARAMS, [TOKENS])
    base = APPLY(PARAMS, TOKENS, CFG)
    err = {}
    for method in ("svd", "svd-whiten"):
        rows = sweep.run(
            PARAMS,
            method,
            [{"rank": 4}],
            lambda p: {"err": float(jnp.linalg.norm(APPLY(p, TOKENS, CFG) - base))},
            stats,
        )
        err[method] = rows[0]["err"]
    assert err["svd-whiten"] < err["svd"]


def test_quantize_and_prune_rows():
    evaluate = lambda p: {"n": len(cmodel.linear_layers(p))}
    q = sweep.run(
        PARAMS, "quantize", [{"bits": 4, "symmetric": True, "granularity": "group", "group_size": 8}], evaluate
    )
    assert q[0]["bits_per_weight"] == pytest.approx(4 + 16 / 8) and q[0]["setting"] == "int4 group(8) sym"
    p = sweep.run(PARAMS, "prune", [{"n": 2, "m": 4}, {"sparsity": 0.75}], evaluate)
    assert [r["kept_fraction"] for r in p] == pytest.approx([0.5, 0.25])


def test_bad_settings_are_clear_errors():
    decs = methods.get("svd").prepare(cmodel.linear_layers(PARAMS), None)
    with pytest.raises(SandboxError, match="choose 1..16"):
        sweep.compress(PARAMS, "svd", {"rank": 17}, decs)
    with pytest.raises(SandboxError, match="calibration"):
        methods.get("asvd").prepare(cmodel.linear_layers(PARAMS), None)
    with pytest.raises(SandboxError, match="choose one of"):
        sweep.compress(PARAMS, "distill", {})


def test_a_sweep_scores_every_setting_with_one_compiled_model():
    """Factors are multiplied out for scoring (`densify`: w = u v, original shapes), so ranks, bit widths,
    casts and sparsities never recompile the model; the scores are those of the factorized model."""
    decs = methods.get("svd").prepare(cmodel.linear_layers(PARAMS), None)
    small, _ = sweep.compress(PARAMS, "svd", {"rank": 5}, decs)
    dense_view = cmodel.densify(small)
    for path, p in cmodel.linear_layers(dense_view).items():
        thin = cmodel.linear_layers(small)[path]
        assert set(p) == ({"w", "b"} if "b" in thin else {"w"})
        np.testing.assert_allclose(p["w"], np.asarray(thin["u"]) @ np.asarray(thin["v"]), rtol=1e-6, atol=1e-7)
    apply = jax.jit(lambda p: transformer.apply(p, TOKENS, CFG))
    scores = []
    evaluate = lambda p: scores.append(apply(p)) or {"n": len(scores)}  # noqa: E731
    evaluate(PARAMS)
    settings = {"svd": [{"fraction": f} for f in (0.1, 0.3, 0.6)], "prune": [{"sparsity": s} for s in (0.2, 0.7)],
                "quantize": [{"bits": b, "symmetric": True, "granularity": "channel", "group_size": 8} for b in (4, 8)]
                + [{"dtype": "bfloat16"}]}
    for method, each in settings.items():
        sweep.run(PARAMS, method, each, evaluate, None)
    assert apply._cache_size() == 1  # every setting of every method: the same shapes, one compilation
    np.testing.assert_allclose(scores[1], APPLY(sweep.compress(PARAMS, "svd", {"fraction": 0.1}, decs)[0], TOKENS, CFG),
                               rtol=1e-4, atol=1e-5)
