"""Sophia-H against its equations, where Hutchinson's estimate is exact (a diagonal Hessian)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sandbox import optim
from sandbox.errors import SandboxError


def test_matches_the_update_rule_on_a_separable_quartic_in_float64():
    """L = sum c x^2/2 + x^4/12: H = diag(c + x^2), so z * (H z) = diag(H) for any z in {-1, 1}^n.

    The weight decay is masked: the first 4 coordinates ("x") decay, the last 3 ("y") do not.
    """
    b1, b2, gamma, wd, lr, every, steps = 0.9, 0.8, 0.5, 0.1, 0.05, 3, 20
    rng = np.random.default_rng(0)
    c = rng.uniform(-0.5, 3.0, 7)  # some negative curvature: there the step saturates to sign(m)
    x = rng.standard_normal(7)
    decays = np.arange(7) < 4
    split = lambda v: {"x": jnp.asarray(v[:4]), "y": jnp.asarray(v[4:])}  # noqa: E731
    loss = lambda p: jnp.sum(c * jnp.concatenate([p["x"], p["y"]]) ** 2 / 2  # noqa: E731
                             + jnp.concatenate([p["x"], p["y"]]) ** 4 / 12)
    with jax.enable_x64(True):
        tx = optim.sophia(lr, b1=b1, b2=b2, gamma=gamma, weight_decay=wd, update_every=every,
                          mask={"x": True, "y": False})
        params = split(x)
        state = tx.init(params)
        update = jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=loss))
        m, h = np.zeros(7), np.zeros(7)
        for t in range(steps):
            g = c * x + x**3 / 3
            m = b1 * m + (1 - b1) * g
            if t % every == 0:
                h = b2 * h + (1 - b2) * (c + x**2)
            x = x - lr * (np.clip(m / np.maximum(gamma * h, 1e-12), -1, 1) + wd * decays * x)
            updates, state = update(split(g), state, params)
            params = optax.apply_updates(params, updates)
            np.testing.assert_allclose(np.concatenate([params["x"], params["y"]]), x, rtol=1e-10, atol=1e-12)
        assert np.any(np.abs(m / np.maximum(gamma * h, 1e-12)) < 1)  # the unclipped branch ran


def test_without_obj_fn_says_what_to_pass():
    tx = optim.sophia(0.1)
    params = {"x": jnp.ones(3)}
    with pytest.raises(SandboxError, match="obj_fn"):
        tx.update(params, tx.init(params), params)
