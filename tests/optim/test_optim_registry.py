"""The optimizer registry, config validation, schedules, clipping, the lr in the state, `sandbox list`."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import paths
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from sandbox import optim
from sandbox.cli import main
from sandbox.errors import SandboxError

PRESETS = sorted((paths.ROOT / "configs" / "optimizer").glob("*.yaml"))


def test_names_resolve_unambiguously():
    names = optim.registry()
    assert names["adam"] is optim.adam and names["optax.adam"] is optax.adam
    assert names["muon"] is optim.muon and names["optax.contrib.muon"] is optax.contrib.muon
    # Found by signature, not listed: every optax alias, no `scale_by_*` transform.
    for expected in ("optax.adamw", "optax.lion", "optax.sgd", "optax.adafactor", "optax.contrib.sophia"):
        assert expected in names
    assert not [n for n in names if ".scale_by" in n]
    assert set(optim.SANDBOX_OPTIMIZERS) == {n for n in names if not n.startswith("optax.")}


@pytest.mark.parametrize("name,suggestion", [("adamm", "adam"), ("optax.adm", "optax.adam"), ("moun", "muon")])
def test_unknown_name_suggests_the_closest(name, suggestion):
    with pytest.raises(SandboxError, match=f"unknown optimizer '{name}'.*did you mean.*{suggestion}"):
        optim.build(optim.OptimizerConfig(name=name), 10)


def test_wrong_keyword_lists_the_valid_ones():
    with pytest.raises(SandboxError, match="no argument 'beta1'; valid: b1, b2, eps"):
        optim.build(optim.OptimizerConfig(name="adam", args={"beta1": 0.9}), 10)
    with pytest.raises(SandboxError, match="optimizer.learning_rate"):
        optim.build(optim.OptimizerConfig(name="adam", args={"learning_rate": 0.1}), 10)
    with pytest.raises(SandboxError, match="l2_norm_clip"):  # a required keyword left out
        optim.build(optim.OptimizerConfig(name="optax.contrib.dpsgd"), 10)
    with pytest.raises(SandboxError, match="ns_coeffs"):  # a value the factory rejects
        optim.build(optim.OptimizerConfig(name="optax.contrib.muon", args={"ns_coeffs": "nope"}), 10)


@pytest.mark.parametrize("field,value,message", [
    ("learning_rate", 0.0, "positive number"), ("learning_rate", -1e-3, "positive number"),
    ("learning_rate", "fast", "positive number"), ("learning_rate", True, "positive number"),
    ("learning_rate", math.nan, "positive number"), ("schedule", "cosin", "constant, cosine, linear"),
    ("warmup_steps", -1, "non-negative integer"), ("min_lr_ratio", 1.5, r"\[0, 1\]"),
    ("clip_norm", -1.0, "non-negative"), ("args", [1, 2], "mapping"), ("name", "", "non-empty"),
])
def test_bad_config_values_are_named(field, value, message):
    with pytest.raises(SandboxError, match=message) as e:
        optim.OptimizerConfig(**{field: value})
    assert f"optimizer.{field}" in str(e.value) and repr(value)[:4] in str(e.value)


def test_warmup_longer_than_training_is_refused():
    with pytest.raises(SandboxError, match="warmup_steps=20 exceeds the 10"):
        optim.build(optim.OptimizerConfig(warmup_steps=20), 10)


@settings(max_examples=25, deadline=None)
@given(schedule=st.sampled_from(["constant", "cosine", "linear"]), warmup=st.integers(0, 20),
       total=st.integers(21, 200), ratio=st.floats(0, 1))
def test_schedule_factor_warms_up_then_decays_to_the_floor(schedule, warmup, total, ratio):
    cfg = optim.OptimizerConfig(schedule=schedule, warmup_steps=warmup, min_lr_ratio=ratio)
    f = optim.schedule_factor(cfg, total)
    values = np.array([float(f(t)) for t in range(total + 1)])
    if warmup:
        np.testing.assert_allclose(values[:warmup + 1], np.arange(warmup + 1) / warmup, atol=1e-6)
    after = values[warmup:]
    assert after[0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(after) <= 1e-6)  # never rises after warmup
    end = 1.0 if schedule == "constant" else ratio
    assert after[-1] == pytest.approx(end, abs=1e-5)
    if schedule == "cosine":  # halfway through the decay: the midpoint of 1 and the floor
        half = total - warmup
        if half % 2 == 0:
            assert after[half // 2] == pytest.approx((1 + ratio) / 2, abs=1e-5)


def _run(cfg, steps, grads_fn, params):
    tx = optim.build(cfg, steps)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(steps):
        updates, state = update(grads_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    return params, state, tx, update


def test_lr_lives_in_the_state_follows_the_schedule_and_changes_without_recompiling():
    cfg = optim.OptimizerConfig(name="sgd", learning_rate=0.5, schedule="linear", warmup_steps=2,
                                min_lr_ratio=0.2, clip_norm=None)
    params = {"w": jnp.zeros(3)}
    tx = optim.build(cfg, 6)
    state, update = tx.init(params), jax.jit(tx.update)
    g = {"w": jnp.ones(3)}
    lrs, steps = [], []
    for _ in range(6):
        u, state = update(g, state, params)
        lrs.append(float(optim.learning_rate(state)))
        steps.append(-float(u["w"][0]))
    expected = 0.5 * np.array([0, 0.5, 1, 0.8, 0.6, 0.4])
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    np.testing.assert_allclose(steps, expected, rtol=1e-6)  # plain SGD's step is lr * g
    state = optim.set_learning_rate(state, 5.0)
    u, state = update(g, state, params)
    assert float(optim.learning_rate(state)) == pytest.approx(5.0 * 0.2)
    assert -float(u["w"][0]) == pytest.approx(1.0)
    assert update._cache_size() == 1


def test_clipping_chains_before_the_optimizer():
    cfg = optim.OptimizerConfig(name="sgd", learning_rate=1.0, clip_norm=2.0)
    tx = optim.build(cfg, 1)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    g = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([0.0, 4.0])}  # global norm 5
    u, _ = tx.update(g, tx.init(params), params)
    norm = float(optax.tree.norm(u))
    assert norm == pytest.approx(2.0, rel=1e-6)
    np.testing.assert_allclose(u["b"], [0.0, -1.6], rtol=1e-6)


def test_sandbox_adam_equals_optax_adam_through_build():
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32)}
    grads_fn = lambda p: jax.tree.map(lambda w: 2 * w + 0.1, p)
    kw = dict(learning_rate=0.01, schedule="cosine", warmup_steps=3, clip_norm=0.5, args={"b2": 0.95})
    ours, *_ = _run(optim.OptimizerConfig(name="adam", **kw), 20, grads_fn, params)
    theirs, *_ = _run(optim.OptimizerConfig(name="optax.adam", **kw), 20, grads_fn, params)
    np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-5, atol=1e-7)
    assert float(jnp.max(jnp.abs(ours["w"] - params["w"]))) > 0.05


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_load_and_build(path):
    cfg = optim.OptimizerConfig(**OmegaConf.to_container(OmegaConf.load(path)))
    assert cfg.name == path.stem
    optim.build(cfg, 100)


def test_a_preset_for_every_sandbox_optimizer():
    assert {p.stem for p in PRESETS} == set(optim.SANDBOX_OPTIMIZERS)


def test_describe_gives_arguments_and_docs():
    rows = {name: (sig, doc) for name, sig, doc in optim.describe()}
    assert rows["adam"][0] == "b1=0.9, b2=0.999, eps=1e-08, eps_root=0.0, nesterov=False"
    assert rows["optax.adam"][1] == "The Adam optimizer."
    assert "learning_rate" not in rows["optax.lion"][0]


def test_cli_lists_optimizers_and_rejects_unknown_things(capsys):
    assert main(["list", "optimizers"]) == 0
    out = capsys.readouterr().out
    for name in ("sophia", "nesterov", "optax.contrib.muon", "b1=0.9"):
        assert name in out
    with pytest.raises(SystemExit) as e:
        main(["list", "potatoes"])
    assert e.value.code == 2


@pytest.mark.parametrize("name", sorted(optim.SANDBOX_OPTIMIZERS))
def test_state_arrays_are_distinct_buffers_so_a_train_step_can_donate_them(name):
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    leaves = jax.tree.leaves(optim.registry()[name](0.1).init(params))
    assert len({id(x) for x in leaves}) == len(leaves)
