"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms")."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class LionState(NamedTuple):
    mu: optax.Updates  # m, the running mean of g at rate b2


def lion(
    learning_rate: float, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 1e-3
) -> optax.GradientTransformation:
    """Lion: the sign of an interpolated momentum, with decoupled weight decay.


        c = b1 m + (1 - b1) g
        theta <- theta - lr * (sign(c) + weight_decay * theta)
        m <- b2 m + (1 - b2) g

    Every coordinate moves by exactly lr (before decay), so lr is ~3-10x smaller than Adam's.
    """

    def init(params):
        return LionState(mu=jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        step = jax.tree.map(lambda g, m: jnp.sign((1 - b1) * g + b1 * m), grads, state.mu)
        if weight_decay:
            step = jax.tree.map(lambda s, p: s + weight_decay * p, step, params)
        mu = jax.tree.map(lambda g, m: (1 - b2) * g + b2 * m, grads, state.mu)
        return jax.tree.map(lambda s: -learning_rate * s, step), LionState(mu=mu)

    return optax.GradientTransformation(init, update)
