"""Every sandbox optimizer, and a few optax ones through the registry, converges (optax's habit).

Each runs from `optim.build` (cosine decay to zero, no clipping) inside one `lax.scan`, and gets
the extra `obj_fn` argument every step, which all but the Sophias must ignore.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sandbox import optim

_rng = np.random.default_rng(0)
CURV = {"w": jnp.asarray(_rng.uniform(1, 10, (3, 4))), "b": jnp.asarray(_rng.uniform(1, 10, (4,)))}
TARGET = {"w": jnp.asarray(_rng.standard_normal((3, 4))), "b": jnp.asarray(_rng.standard_normal(4))}


def quadratic(params):
    """0.5 sum_i c_i (x_i - x*_i)^2, curvatures c_i in [1, 10]; minimum 0 at x*."""
    return sum(jnp.sum(0.5 * c * (p - t) ** 2) for p, t, c in
               zip(jax.tree.leaves(params), jax.tree.leaves(TARGET), jax.tree.leaves(CURV)))


def rosenbrock(params):
    """(1 - x)^2 + 100 (y - x^2)^2; minimum 0 at (1, 1)."""
    x, y = params["xy"]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


PROBLEMS = {
    "quadratic": (quadratic, {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}, TARGET),
    "rosenbrock": (rosenbrock, {"xy": jnp.zeros(2)}, {"xy": jnp.ones(2)}),
}

# name -> (learning rate on the quadratic, on Rosenbrock, args)
OPTIMIZERS = {
    "sgd": (0.1, 1.9e-3, {}),  # Rosenbrock: lr < 2 / lambda_max(H(1, 1)) ~ 2 / 1002
    "momentum": (0.02, 1e-3, {"beta": 0.9}),
    "nesterov": (0.02, 1e-3, {"beta": 0.9}),
    "adam": (0.1, 0.02, {}),
    "adamw": (0.1, 0.02, {"weight_decay": 0.0}),
    "lion": (0.05, 0.01, {"weight_decay": 0.0}),
    "muon": (0.1, 0.02, {}),
    "sophia": (0.1, 0.02, {"update_every": 1}),
    "optax.sgd": (0.1, 1.9e-3, {}),
    "optax.adam": (0.1, 0.02, {}),
    "optax.rmsprop": (0.02, 2e-3, {}),
    "optax.contrib.muon": (0.1, 0.02, {}),
    "optax.contrib.sophia": (0.1, 0.02, {"update_interval": 1}),
}
STEPS = 10_000


def _minimize(name, problem):
    loss_fn, params, _ = PROBLEMS[problem]
    lr_quadratic, lr_rosenbrock, args = OPTIMIZERS[name]
    lr = lr_quadratic if problem == "quadratic" else lr_rosenbrock
    cfg = optim.OptimizerConfig(name=name, learning_rate=lr, schedule="cosine", min_lr_ratio=0.0,
                                clip_norm=None, args=args)
    tx = optim.build(cfg, STEPS)

    def step(carry, _):
        params, state = carry
        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, obj_fn=loss_fn)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, length=STEPS))((params, tx.init(params)))
    return params


def test_every_sandbox_optimizer_is_covered():
    assert set(optim.SANDBOX_OPTIMIZERS) <= set(OPTIMIZERS)


@pytest.mark.slow
@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_converges(name, problem):
    _, start, solution = PROBLEMS[problem]
    params = _minimize(name, problem)
    for p, x0, s in zip(jax.tree.leaves(params), jax.tree.leaves(start), jax.tree.leaves(solution)):
        np.testing.assert_allclose(p, s, rtol=1e-2, atol=1e-2)  # optax's tolerance
        assert np.max(np.abs(x0 - s)) > 0.5  # it had somewhere to go
