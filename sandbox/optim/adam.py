"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), written from the update rules."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class AdamState(NamedTuple):
    count: jax.Array  # t, the number of steps taken
    mu: optax.Updates  # m, the running mean of g
    nu: optax.Updates  # v, the running mean of g^2


def adamw(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 1e-4,
    mask: Any | None = None,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """Adam with decoupled weight decay (AdamW).

    At step t, with gradient g:

        m <- b1 m + (1 - b1) g             v <- b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t)             v_hat = v / (1 - b2^t)
        theta <- theta - lr * (m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * theta)

    `nesterov=True` (NAdam) uses m_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t).
    `mask` (a pytree of bools like the params, or a function params -> such a pytree) says
    which parameters decay; None decays all of them.
    """

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # two trees: each buffer donatable
        return AdamState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

    def update(grads, state, params=None):
        t = state.count + 1
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, grads, state.mu)
        nu = jax.tree.map(lambda g, v: (1 - b2) * g**2 + b2 * v, grads, state.nu)
        m_hat = jax.tree.map(lambda m: m / (1 - b1**t), mu)
        if nesterov:
            m_hat = jax.tree.map(
                lambda m, g: b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t), mu, grads
            )
        step = jax.tree.map(
            lambda m, v: m / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps), m_hat, nu
        )
        if weight_decay:
            decays = mask(params) if callable(mask) else mask
            decays = jax.tree.map(lambda _: True, params) if decays is None else decays
            step = jax.tree.map(lambda s, p, d: s + weight_decay * p if d else s, step, params, decays)
        updates = jax.tree.map(lambda s: -learning_rate * s, step)
        return updates, AdamState(count=t, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def adam(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """Adam: AdamW (see `adamw`) with weight_decay = 0."""
    return adamw(learning_rate, b1, b2, eps, eps_root, weight_decay=0.0, nesterov=nesterov)
