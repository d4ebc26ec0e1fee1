"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019): the moments are the mathematics,
decay and step size are optax's, chained as `optax.adam` and `optax.adamw` chain theirs."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # t, the number of steps taken
    mu: optax.Updates  # m, the running mean of g
    nu: optax.Updates  # v, the running mean of g^2


def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """Adam's direction d from the gradient g at step t:

        m <- b1 m + (1 - b1) g             v <- b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t)             v_hat = v / (1 - b2^t)
        d = m_hat / (sqrt(v_hat + eps_root) + eps)

    `nesterov=True` (NAdam) uses m_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t).
    The diagonal sqrt(v_hat + eps_root) + eps is Adam's preconditioner (`optim.preconditioner`).
    """

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # two trees: each buffer donatable
        return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

    def update(grads, state, params=None):
        t = state.count + 1
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, grads, state.mu)
        nu = jax.tree.map(lambda g, v: (1 - b2) * g**2 + b2 * v, grads, state.nu)
        m_hat = jax.tree.map(lambda m: m / (1 - b1**t), mu)
        if nesterov:
            m_hat = jax.tree.map(
                lambda m, g: b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t), mu, grads
            )
        direction = jax.tree.map(
            lambda m, v: m / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps), m_hat, nu
        )
        return direction, ScaleByAdamState(count=t, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


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
    """Adam with decoupled weight decay (AdamW):  theta <- theta - lr * (d + weight_decay * theta).

    d is Adam's direction (`scale_by_adam`). `mask` (a pytree of bools like the params, or a
    function params -> such a pytree) says which parameters decay; None decays all of them.
    """
    return optax.chain(
        scale_by_adam(b1, b2, eps, eps_root, nesterov),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )


def adam(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """Adam (no weight decay):  theta <- theta - lr * m_hat / (sqrt(v_hat) + eps), moments as in `scale_by_adam`."""
    return optax.chain(scale_by_adam(b1, b2, eps, eps_root, nesterov), optax.scale_by_learning_rate(learning_rate))
