"""Gradient descent with and without momentum: the momentum is the mathematics, the step is optax's."""

from typing import NamedTuple

import jax
import optax


class MomentumState(NamedTuple):
    velocity: optax.Updates  # v, one array per parameter


def scale_by_momentum(beta: float = 0.9, nesterov: bool = False) -> optax.GradientTransformation:
    """The direction d of heavy-ball (Polyak) or Nesterov (Sutskever's form) momentum:

        v <- g + beta v;    d = v  (heavy ball),    d = g + beta v  (nesterov)

    As `optax.trace(decay=beta, nesterov=...)`.
    """

    def init(params):
        return MomentumState(velocity=jax.tree.map(lambda p: 0 * p, params))

    def update(grads, state, params=None):
        v = jax.tree.map(lambda g, v: g + beta * v, grads, state.velocity)
        direction = jax.tree.map(lambda g, v: g + beta * v, grads, v) if nesterov else v
        return direction, MomentumState(velocity=v)

    return optax.GradientTransformation(init, update)


def sgd(learning_rate: float) -> optax.GradientTransformation:
    """Plain gradient descent:  theta <- theta - lr * g."""
    return optax.chain(optax.identity(), optax.scale_by_learning_rate(learning_rate))


def momentum(learning_rate: float, beta: float = 0.9) -> optax.GradientTransformation:
    """Heavy-ball momentum (Polyak):  v <- g + beta v;  theta <- theta - lr * v."""
    return optax.chain(scale_by_momentum(beta), optax.scale_by_learning_rate(learning_rate))


def nesterov(learning_rate: float, beta: float = 0.9) -> optax.GradientTransformation:
    """Nesterov momentum (Sutskever's form):  v <- g + beta v;  theta <- theta - lr * (g + beta v)."""
    return optax.chain(scale_by_momentum(beta, nesterov=True), optax.scale_by_learning_rate(learning_rate))
