"""Gradient descent with and without momentum, written from the update rules."""

from typing import NamedTuple

import jax
import optax


class MomentumState(NamedTuple):
    velocity: optax.Updates  # v, one array per parameter


def sgd(learning_rate: float) -> optax.GradientTransformation:
    """Plain gradient descent:  theta <- theta - lr * g."""

    def update(grads, state, params=None):
        return jax.tree.map(lambda g: -learning_rate * g, grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _momentum(learning_rate: float, beta: float, lookahead: bool) -> optax.GradientTransformation:
    def init(params):
        return MomentumState(velocity=jax.tree.map(lambda p: 0 * p, params))

    def update(grads, state, params=None):
        v = jax.tree.map(lambda g, v: g + beta * v, grads, state.velocity)
        step = jax.tree.map(lambda g, v: g + beta * v, grads, v) if lookahead else v
        return jax.tree.map(lambda s: -learning_rate * s, step), MomentumState(velocity=v)

    return optax.GradientTransformation(init, update)


def momentum(learning_rate: float, beta: float = 0.9) -> optax.GradientTransformation:
    """Heavy-ball momentum (Polyak):  v <- g + beta v;  theta <- theta - lr * v."""
    return _momentum(learning_rate, beta, lookahead=False)


def nesterov(learning_rate: float, beta: float = 0.9) -> optax.GradientTransformation:
    """Nesterov momentum (Sutskever's form):  v <- g + beta v;  theta <- theta - lr * (g + beta v)."""
    return _momentum(learning_rate, beta, lookahead=True)
