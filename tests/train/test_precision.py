"""Precision policies in the engine: loss scaling, update rounding, and exact resume under every policy."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import micro

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
        # what the scale saved: 1e-8 < 2^-14 would be lost without S (logged by loss-scaled runs only)
        assert m.get("grad_underflow_fraction_unscaled") == (None if scaling == "none" else 0.5)
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
    assert float(m["grad_underflow_fraction_unscaled"]) == 0.5  # C·g without S: 9.8e-9 and 2.9e-6 below 2^-14
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


# Every policy but fp32 (test_train's resume test), with stochastic and Kahan updates where the weights are low
# precision (pure bf16 / fp16; nearest keeps no state and no key beyond stochastic's); the mixed policies keep
# float32 master weights, where update_rounding does not apply. Loss-scale period 1: the fp16 scale doubles every
# good step until S·g overflows, so skipped steps and a moving scale cross the cut too. The in-loop sharpness (its
# Lanczos program is most of a case's compile time) runs in one fp16 case; numerics.curvature_precision covers
# bf16/fp16 HVPs.
RESUME_CASES = [*[(p, r) for p in ("bf16", "fp16") for r in ("stochastic", "kahan")],
                ("mixed_bf16", "nearest"), ("mixed_fp16", "nearest")]
SHARPNESS_CASE = ("fp16", "kahan")


@pytest.fixture(scope="module", params=RESUME_CASES, ids=["-".join(c) for c in RESUME_CASES])
def resumed(request, tmp_path_factory):
    """(precision, rounding, full run, the same run cut after step 2's checkpoint and resumed)."""
    precision, rounding = request.param
    cfg = micro("train.steps=4", "train.eval_every=4", "train.checkpoint_every=2", "train.log_every=2",
                "train.eval_batches=2", f"train.sharpness_every={4 if request.param == SHARPNESS_CASE else 0}",
                "train.loss_scale_period=1",
                f"train.precision={precision}", f"train.update_rounding={rounding}")
    full = tmp_path_factory.mktemp(f"{precision}-{rounding}") / "full"
    cut = full.parent / "cut"
    session.start(cfg, full, progress=False)
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "4")  # as if the run had died after step 2's checkpoint
    session.resume(cut, progress=False)
    return precision, rounding, full, cut


def test_every_policy_resumes_bit_identically(resumed):
    precision, rounding, full, cut = resumed
    _, state_full = checkpoint.load_state(full)
    _, state_cut = checkpoint.load_state(cut)
    leaves_full, tree = jax.tree.flatten(state_full)
    assert jax.tree.structure(state_cut) == tree
    for a, b in zip(leaves_full, jax.tree.leaves(state_cut)):  # params, optimizer state, policy state, step
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert int(state_full.step) == 4
    drop = {"tokens_per_second"}  # wall-clock
    rows_full, rows_cut = records.read_metrics(full / "metrics.jsonl"), records.read_metrics(cut / "metrics.jsonl")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows_full] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows_cut]
    assert [r["step"] for r in rows_full] == [2, 4]
    # the weights moved after the cut (a resume of a frozen run would be identical for nothing)
    _, state_2 = checkpoint.load_state(full, step=2)
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(jax.tree.leaves(state_2.params),
                                                                     jax.tree.leaves(state_full.params)))


def test_every_policy_keeps_its_formats_and_state(resumed):
    precision, rounding, full, _ = resumed
    param_dtype, compute_dtype = P.DTYPES[precision]
    _, state = checkpoint.load_state(full)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype(param_dtype)}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim} == {np.dtype(np.float32)}
    numerics = getattr(state, "numerics", None)
    kahan = param_dtype != jnp.float32 and rounding == "kahan"
    assert (numerics is not None) == (compute_dtype == jnp.float16 or kahan)
    if compute_dtype == jnp.float16:  # 4 steps at period 1: each good step doubles S, a skipped one halves it
        skipped = int(numerics["skipped_steps"])
        assert float(numerics["loss_scale"]) == P.INITIAL_LOSS_SCALE * 2.0 ** (4 - 2 * skipped)
    if kahan:  # the compensation buffer holds the low bits the weights lost, in the weights' format
        assert all(c.dtype == param_dtype for c in jax.tree.leaves(numerics["kahan"]))
        assert any(np.any(np.asarray(c) != 0) for c in jax.tree.leaves(numerics["kahan"]))
    _, params, _ = checkpoint.load_run(full)  # what the tools (hessian, compress, ...) read: float32 copies
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, np.asarray(b).astype(np.float32))
    row = records.read_metrics(full / "metrics.jsonl")[-1]
    if (precision, rounding) == SHARPNESS_CASE:  # curvature tracking works on fp16 weights and compute
        assert np.isfinite(row["sharpness"]) and row["sharpness"] > 0
    assert "grad_underflow_fraction" in row
    assert ("loss_scale" in row) == (compute_dtype == jnp.float16)


def test_bad_precision_is_rejected_with_the_choices():
    with pytest.raises(SandboxError, match=r"train.precision=.fp8. is not known; valid choices: fp32, bf16, fp16"):
        config.load("configs/tiny.yaml", ["train.precision=fp8"])
