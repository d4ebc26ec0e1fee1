"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), chained as `optax.lion`."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByLionState(NamedTuple):
    mu: optax.Updates  # m, the running mean of g at rate b2


def scale_by_lion(b1: float = 0.9, b2: float = 0.99) -> optax.GradientTransformation:
    """Lion's direction: the sign of an interpolated momentum.

        d = sign(b1 m + (1 - b1) g);    m <- b2 m + (1 - b2) g
    """

    def init(params):
        return ScaleByLionState(mu=jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        direction = jax.tree.map(lambda g, m: jnp.sign((1 - b1) * g + b1 * m), grads, state.mu)
        mu = jax.tree.map(lambda g, m: (1 - b2) * g + b2 * m, grads, state.mu)
        return direction, ScaleByLionState(mu=mu)

    return optax.GradientTransformation(init, update)


def lion(
    learning_rate: float, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 1e-3, mask: Any | None = None
) -> optax.GradientTransformation:
    """Lion: the sign of an interpolated momentum, with decoupled weight decay.

        theta <- theta - lr * (sign(b1 m + (1 - b1) g) + weight_decay * theta)     (`scale_by_lion`)

    Every coordinate moves by exactly lr (before decay), so lr is ~3-10x smaller than Adam's.
    `mask` (pytree of bools or params -> pytree) says which parameters decay; None: all.
    """
    return optax.chain(
        scale_by_lion(b1, b2),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )
