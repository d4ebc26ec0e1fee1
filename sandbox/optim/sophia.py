"""Sophia-H (Liu et al. 2023): clipped steps preconditioned by a Hutchinson Hessian diagonal."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sandbox import curvature
from sandbox.errors import SandboxError


class ScaleBySophiaState(NamedTuple):
    count: jax.Array  # t
    mu: optax.Updates  # m, the running mean of g
    hess: optax.Updates  # h, the running mean of the Hessian-diagonal estimates
    key: jax.Array  # for the Hutchinson probes


def scale_by_sophia(
    b1: float = 0.965, b2: float = 0.99, gamma: float = 0.01, eps: float = 1e-12,
    update_every: int = 10, num_matvecs: int = 1, seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Sophia-H's direction. Its update needs the extra argument `obj_fn` (params -> scalar loss on this batch):

        m <- b1 m + (1 - b1) g
        every `update_every` steps (from t = 1):  h <- b2 h + (1 - b2) z * (H z),  z Rademacher,
            H the Hessian of obj_fn at theta (`curvature.diagonal`, `num_matvecs` probes)
        d = clip(m / max(gamma h, eps), -1, 1)

    Where the curvature is small or negative the ratio saturates and d = sign(m). Unlike
    optax.contrib.scale_by_sophia (bias-corrected m, h refreshed after its use), this is the paper's rule.
    """

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # two trees: each buffer donatable
        return ScaleBySophiaState(jnp.zeros([], jnp.int32), zeros(), zeros(), jax.random.PRNGKey(seed))

    def update(grads, state, params=None, *, obj_fn=None, **extra):
        if obj_fn is None or params is None:
            raise SandboxError("sophia needs params and obj_fn=(params -> scalar loss on this batch) "
                               "in its update(grads, state, params, obj_fn=...) (as optax.contrib.sophia)")
        key, probe_key = jax.random.split(state.key)

        def estimate(hess):
            op = curvature.hessian(lambda p, _: obj_fn(p), params, ())
            diag = curvature.diagonal(op, key=probe_key, num_matvecs=num_matvecs)
            return jax.tree.map(lambda h, d: b2 * h + (1 - b2) * d, hess, diag)

        hess = jax.lax.cond(state.count % update_every == 0, estimate, lambda h: h, state.hess)
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, grads, state.mu)
        direction = jax.tree.map(lambda m, h: jnp.clip(m / jnp.maximum(gamma * h, eps), -1, 1), mu, hess)
        return direction, ScaleBySophiaState(state.count + 1, mu, hess, key)

    return optax.GradientTransformationExtraArgs(init, update)


def sophia(
    learning_rate: float,
    b1: float = 0.965,
    b2: float = 0.99,
    gamma: float = 0.01,
    eps: float = 1e-12,
    weight_decay: float = 0.0,
    update_every: int = 10,
    num_matvecs: int = 1,
    seed: int = 0,
    mask: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Sophia-H: clipped steps preconditioned by a Hutchinson Hessian diagonal (needs `obj_fn`).

        theta <- theta - lr * (clip(m / max(gamma h, eps), -1, 1) + weight_decay * theta)

    with m and h from `scale_by_sophia`; every coordinate moves at most lr per step (before decay).
    `mask` (pytree of bools or params -> pytree) says which parameters decay; None: all.
    """
    return optax.chain(
        scale_by_sophia(b1, b2, gamma, eps, update_every, num_matvecs, seed),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )
