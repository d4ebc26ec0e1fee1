"""The optimizers' diagonal preconditioners: read from the state, equal to the update rule's P, and
the preconditioned sharpness lambda_max(P^-1/2 H P^-1/2) against a dense float64 eigensolve."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from sandbox import curvature, optim
from sandbox.cli import main
from sandbox.errors import SandboxError
from sandbox.text.data import get_batch
from sandbox.train import config
from sandbox.train import sharpness as train_sharpness
from sandbox.train.step import init_state, loss_fn_for

STEPS = 12
_rng = np.random.default_rng(0)
X_NxD, Y_NxC = _rng.standard_normal((16, 3)), _rng.standard_normal((16, 2))
PARAMS = {"w1": _rng.standard_normal((3, 4)), "b1": _rng.standard_normal(4), "w2": _rng.standard_normal((4, 2))}


def mlp_loss(params, batch):
    """(1/2N) sum ||tanh(x W1 + b1) W2 - y||^2: 24 parameters, a non-diagonal Hessian."""
    x_NxD, y_NxC = batch
    return 0.5 * jnp.mean(jnp.sum((jnp.tanh(x_NxD @ params["w1"] + params["b1"]) @ params["w2"] - y_NxC) ** 2, -1))


def _adam_p(grads, b2, eps, eps_root):
    """sqrt(nu_hat + eps_root) + eps from the gradient history: nu_t = (1 - b2) sum_s b2^(t-s) g_s^2."""
    nu = sum((1 - b2) * b2 ** (len(grads) - 1 - s) * g**2 for s, g in enumerate(grads))
    return np.sqrt(nu / (1 - b2 ** len(grads)) + eps_root) + eps


# name, args, P from the recorded gradients (each optimizer's own defaults where args say nothing)
ADAM_CASES = [
    ("adam", {"b2": 0.9, "eps": 1e-3}, lambda gs: _adam_p(gs, 0.9, 1e-3, 0.0)),
    ("adam", {}, lambda gs: _adam_p(gs, 0.999, 1e-8, 0.0)),
    ("adamw", {"b2": 0.95, "eps_root": 1e-4, "weight_decay": 0.1, "nesterov": True},
     lambda gs: _adam_p(gs, 0.95, 1e-8, 1e-4)),
    ("optax.adam", {"eps": 1e-2}, lambda gs: _adam_p(gs, 0.999, 1e-2, 0.0)),
]


@pytest.mark.parametrize("name,args,reference", ADAM_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(ADAM_CASES)])
def test_adam_preconditioned_sharpness_matches_dense_float64(name, args, reference):
    with jax.enable_x64(True):
        batch = (jnp.asarray(X_NxD), jnp.asarray(Y_NxC))
        params = jax.tree.map(jnp.asarray, PARAMS)
        cfg = optim.OptimizerConfig(name=name, learning_rate=0.01, clip_norm=None, args=args)
        tx = optim.build(cfg, STEPS)  # the state sits inside inject_hyperparams and chain
        state, update = tx.init(params), jax.jit(tx.update)
        grads_seen = []
        for _ in range(STEPS):
            grads = jax.grad(mlp_loss)(params, batch)
            grads_seen.append(np.asarray(ravel_pytree(grads)[0]))
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)

        precond = optim.preconditioner(name, args, state)
        p_N = reference(grads_seen)
        np.testing.assert_allclose(ravel_pytree(precond)[0], p_N, rtol=1e-12)
        got = curvature.preconditioned_sharpness(mlp_loss, params, batch, jax.random.key(0), precond,
                                                 num_steps=p_N.size)
        flat, unravel = ravel_pytree(params)
        h = np.asarray(jax.hessian(lambda f: mlp_loss(unravel(f), batch))(flat))
        d = 1 / np.sqrt(p_N)
        expected = np.linalg.eigvalsh(d[:, None] * h * d[None, :])[-1]
        np.testing.assert_allclose(got, expected, rtol=1e-8)
        assert not np.isclose(expected, np.linalg.eigvalsh(h)[-1], rtol=0.1)  # P changed the answer


def test_sophia_preconditioner_is_its_clipped_denominator():
    """On L = sum c x^2/2 + x^4/12 Hutchinson is exact, h = EMA of c + x^2, and P = max(gamma h, eps)."""
    b2, gamma, every = 0.8, 0.5, 2
    rng = np.random.default_rng(1)
    c = rng.uniform(0.5, 3.0, 5)
    loss = lambda p, _=None: jnp.sum(c * p["x"] ** 2 / 2 + p["x"] ** 4 / 12)  # noqa: E731
    with jax.enable_x64(True):
        args = {"b2": b2, "gamma": gamma, "update_every": every, "weight_decay": 0.1}
        cfg = optim.OptimizerConfig(name="sophia", learning_rate=0.05, clip_norm=None, args=args)
        tx = optim.build(cfg, 10)
        params = {"x": jnp.asarray(rng.standard_normal(5))}
        state, update = tx.init(params), jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=loss))
        h = np.zeros(5)
        for t in range(7):
            x = np.asarray(params["x"])
            if t % every == 0:
                h = b2 * h + (1 - b2) * (c + x**2)
            updates, state = update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
        precond = optim.preconditioner("sophia", args, state)
        np.testing.assert_allclose(precond["x"], np.maximum(gamma * h, 1e-12), rtol=1e-12)
        got = curvature.preconditioned_sharpness(loss, params, None, jax.random.key(0), precond, num_steps=5)
        x = np.asarray(params["x"])
        np.testing.assert_allclose(got, np.max((c + x**2) / (gamma * h)), rtol=1e-8)  # H diagonal


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "lion", "muon", "optax.sgd"])
def test_optimizers_without_a_diagonal_preconditioner_say_so(name):
    tx = optim.registry()[name](0.1)
    params = {"w": jnp.ones((2, 3))}
    assert not optim.has_preconditioner(name)
    assert optim.preconditioner(name, {}, tx.init(params)) is None


MICRO = ["data.corpus=markov", "data.markov.alphabet=4", "data.markov.length=5000", "model.vocab_size=4",
         "model.d_model=8", "model.n_layers=1", "model.n_heads=2", "model.d_ff=16", "model.seq_len=8",
         "train.batch_size=4", "train.sharpness_every=5", "train.sharpness_preconditioned=true"]


def test_training_reads_the_optimizers_own_eps_and_b2():
    """make_sharpness's preconditioned value uses P from the run's optimizer args (eps = 0.1 here,
    b2 = 0.999 from adam's signature), not fixed Adam defaults."""
    cfg = dataclasses.replace(config.load("configs/tiny.yaml", MICRO),
                              optimizer=optim.OptimizerConfig(name="adam", clip_norm=None, args={"eps": 0.1}))
    tx = optim.build(cfg.optimizer, 10)
    state = init_state(jax.random.PRNGKey(0), cfg, tx)
    ids_N = jax.random.randint(jax.random.PRNGKey(1), (400,), 0, 4)
    loss_fn = loss_fn_for(cfg)
    batch = get_batch(ids_N, jax.random.PRNGKey(cfg.train.seed + 20_000), cfg.train.batch_size, cfg.model.seq_len)
    grad_fn, update = jax.jit(jax.grad(loss_fn)), jax.jit(tx.update)
    grads_seen = []
    for _ in range(3):
        grads = grad_fn(state.params, batch)
        grads_seen.append(np.asarray(ravel_pytree(grads)[0], np.float64))
        updates, opt_state = update(grads, state.opt_state, state.params)
        state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)

    row = train_sharpness.make_sharpness(cfg, 1)(state, ids_N, None)
    _, unravel = ravel_pytree(state.params)
    key = jax.random.PRNGKey(cfg.train.seed + 20_000)
    measure = jax.jit(lambda p_N: curvature.preconditioned_sharpness(loss_fn, state.params, batch, key, unravel(p_N)))
    expected = {eps: measure(jnp.asarray(_adam_p(grads_seen, 0.999, eps, 0.0), jnp.float32)) for eps in (0.1, 1e-8)}
    np.testing.assert_allclose(row["preconditioned_sharpness"], expected[0.1], rtol=1e-4)
    assert expected[1e-8] > 2 * expected[0.1]  # Adam's default eps would have given another number


def test_an_optimizer_without_one_is_refused_before_the_run_folder_exists(tmp_path, capsys):
    cfg = config.load("configs/tiny.yaml", MICRO + ["optimizer=lion"])
    with pytest.raises(SandboxError, match=r"sharpness_preconditioned needs an optimizer with a diagonal "
                                           r"preconditioner \(adam, adamw, sophia.*'lion'"):
        train_sharpness.check(cfg)
    out = tmp_path / "never"
    assert main(["train", "configs/tiny.yaml", *MICRO, "optimizer=sgd", "--out", str(out)]) == 2
    assert "diagonal preconditioner" in capsys.readouterr().err and not out.exists()
