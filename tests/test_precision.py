"""Precision policies in the engine: loss scaling, update rounding, and exact resume under every policy."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import micro

from sandbox.errors import SandboxError
from sandbox.train import checkpoint, config, records, session
from sandbox.train import precision as P


def _policy(name, rounding="nearest", scaling="dynamic", period=2, static=1.0):
    cfg = config.load("configs/tiny.yaml", [f"train.precision={name}", f"train.update_rounding={rounding}",
                                            f"train.loss_scaling={scaling}", f"train.loss_scale_period={period}",
                                            f"train.static_loss_scale={static}"])
    return P.policy(cfg.train)


def test_loss_scaling_skips_an_inf_gradient_and_recovers():
    p = _policy("mixed_fp16", period=2)
    params, extra = P.init({"w": jnp.ones((3,), jnp.float32)}, p)
    loss_fn = lambda q, b: jnp.sum(q["w"] * b)  # gradient = b
    scale0 = float(extra["loss_scale"])

    @jax.jit
    def step(params, extra, batch):
        loss, grads, finite, _ = P.value_and_grad(loss_fn, params, batch, extra, p)
        new = jax.tree.map(lambda w, g: w - 0.1 * g, params, grads)
        return P.finish(finite, (params, None, extra), (new, None, extra), p), grads

    (params1, _, extra1), _ = step(params, extra, jnp.asarray([1.0, jnp.inf, 1.0]))
    np.testing.assert_array_equal(params1["w"], params["w"])  # the step was skipped
    assert int(extra1["skipped_steps"]) == 1 and float(extra1["loss_scale"]) == scale0 / 2
    (params2, _, extra2), grads = step(params1, extra1, jnp.asarray([1.0, 2.0, 1e-6]))
    np.testing.assert_allclose(grads["w"], [1.0, 2.0, 1e-6], rtol=1e-3)  # unscaled back, 1e-6 kept
    np.testing.assert_allclose(params2["w"], [0.9, 0.8, 1.0], rtol=1e-6)
    (_, _, extra3), _ = step(params2, extra2, jnp.asarray([1.0, 1.0, 1.0]))
    assert float(extra3["loss_scale"]) == scale0 and int(extra3["skipped_steps"]) == 1  # doubled after 2 good


def test_fp16_without_scaling_underflows_what_scaling_keeps():
    g = {"a": jnp.asarray([1.0, 1e-5, 1e-8, 0.0], jnp.float16)}  # 1e-5 subnormal, 1e-8 flushes to 0
    assert float(P.underflow_fraction(g, jnp.float16)) == 0.75
    loss_fn = lambda q, b: jnp.sum(q["w"] * b)
    grads = {}
    for scaling in ("none", "dynamic"):
        p = _policy("mixed_fp16", scaling=scaling)
        params, extra = P.init({"w": jnp.ones((2,))}, p)
        _, grads[scaling], _, m = P.value_and_grad(loss_fn, params, jnp.asarray([1e-8, 1.0]), extra, p)
        assert m["grad_underflow_fraction"] == (0.5 if scaling == "none" else 0.0)
    assert float(grads["none"]["w"][0]) == 0.0
    np.testing.assert_allclose(grads["dynamic"]["w"][0], 1e-8, rtol=1e-3)


def test_static_loss_scale_shrinks_what_the_fp16_backward_sees_and_only_that():
    loss_fn = lambda q, b: jnp.sum(q["w"] * b)  # gradient = b
    b = jnp.asarray([1e-5, 1.0, 3e-3, -2.0])
    out = {}
    for name, scaling in (("mixed_fp16", "none"), ("mixed_fp16", "dynamic"), ("fp32", "dynamic")):
        p = _policy(name, scaling=scaling, static=2.0**-10)
        params, extra = P.init({"w": jnp.ones((4,))}, p)
        _, grads, finite, m = P.value_and_grad(loss_fn, params, b, extra, p)
        out[name, scaling] = (np.asarray(grads["w"], np.float64), m)
    g, m = out["mixed_fp16", "none"]
    # 1e-5 * 2^-10 = 9.8e-9 < 2^-25 flushes to 0; 3e-3 * 2^-10 = 2.9e-6 is subnormal (spacing 2^-24: ~5 bits)
    assert g[0] == 0.0 and float(m["grad_zero_fraction"]) == 0.25 and float(m["grad_underflow_fraction"]) == 0.5
    assert abs(g[2] - 3e-3) / 3e-3 < 2.0**-24 / (3e-3 * 2.0**-10) and g[2] != 3e-3
    np.testing.assert_array_equal(g[[1, 3]], [1.0, -2.0])  # the float32 gradient is divided back by C
    g, m = out["mixed_fp16", "dynamic"]  # the dynamic scale 2^15 on top: C·S = 32 puts every entry in range
    np.testing.assert_allclose(g, np.asarray(b), rtol=1e-3)
    assert float(m["grad_zero_fraction"]) == 0.0 and float(m["grad_underflow_fraction"]) == 0.0
    np.testing.assert_array_equal(out["fp32", "dynamic"][0], np.asarray(b, np.float32))  # fp32 ignores C
    with pytest.raises(SandboxError, match="train.static_loss_scale must be a positive number"):
        _policy("mixed_fp16", static=0)


def test_update_rounding_nearest_loses_small_updates_stochastic_and_kahan_keep_them():
    steps, dw = 200, 1e-3  # dw < ulp(1)/2 = 2^-8 in bfloat16
    out = {}
    for rounding in ("nearest", "stochastic", "kahan"):
        p = _policy("bf16", rounding)
        state = P.init({"w": jnp.ones((4096,))}, p)
        body = lambda s, key, p=p: (P.apply_updates(s[0], {"w": jnp.full((4096,), dw)}, s[1], key, p), None)
        params, _ = jax.lax.scan(body, state, jax.random.split(jax.random.PRNGKey(0), steps))[0]
        out[rounding] = np.asarray(params["w"], np.float64)
    target = 1 + steps * dw
    assert np.all(out["nearest"] == 1.0)
    assert abs(out["stochastic"].mean() - target) < 0.01
    assert np.abs(out["kahan"] - target).max() <= 2.0**-7  # within one bf16 ulp of the exact sum


# pure bf16 with stochastic rounding (its keys must replay on resume), pure fp16 with Kahan (the
# compensation buffer, loss scale and skipped-step count all live in the checkpoint) and mixed_fp16 (float32
# master weights beside the loss-scale state); fp32 is test_train's resume test, and mixed_bf16 has fp32's
# state tree (its policy keeps no state) with bf16's compute cast, both covered here and there
@pytest.mark.parametrize("precision,rounding", [("bf16", "stochastic"), ("fp16", "kahan"), ("mixed_fp16", "nearest")])
def test_each_policy_trains_and_resumes_bit_identically(tmp_path, precision, rounding):
    cfg = micro("train.steps=6", "train.eval_every=6", "train.checkpoint_every=3", "train.log_every=3",
                "train.sharpness_every=6",
                f"train.precision={precision}", f"train.update_rounding={rounding}")
    full, cut = tmp_path / "full", tmp_path / "cut"
    session.start(cfg, full, progress=False)
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "6")
    session.resume(cut, progress=False)
    _, params_full, _ = checkpoint.load_run(full)
    _, params_cut, _ = checkpoint.load_run(cut)
    dtype = P.DTYPES[precision][0]
    for a, b in zip(jax.tree.leaves(params_full), jax.tree.leaves(params_cut)):
        assert a.dtype == np.float32  # the tools (hessian, compress, ...) get float32 copies of the weights
        np.testing.assert_array_equal(a, np.asarray(a).astype(dtype).astype(np.float32))  # ... of bf16/fp16 values
        np.testing.assert_array_equal(a, b)
    rows = records.read_metrics(full / "metrics.jsonl")
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in records.read_metrics(cut / "metrics.jsonl")]
    assert 0 <= rows[-1]["grad_underflow_fraction"] < 1
    assert ("loss_scale" in rows[-1]) == precision.endswith("fp16")
    assert rows[-1]["sharpness"] > 0  # curvature tracking works on low-precision weights


def test_bad_precision_is_rejected_with_the_choices():
    with pytest.raises(SandboxError, match=r"train.precision=.fp8. is not known; valid choices: fp32, bf16, fp16"):
        config.load("configs/tiny.yaml", ["train.precision=fp8"])
