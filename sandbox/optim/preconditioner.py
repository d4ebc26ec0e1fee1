"""The diagonal preconditioner P an optimizer divides its step by, read from its state.

A diagonal method steps  theta <- theta - lr * P^-1 m  (m a momentum), so near a minimum it is
gradient descent on the reparametrized loss with Hessian P^-1/2 H P^-1/2: its sharpness is
lambda_max(P^-1/2 H P^-1/2) (see `curvature.preconditioned_sharpness`). Each optimizer says where
its P lives, with its own hyperparameters (its factory's defaults, overridden by `args`):

    adam, adamw:  P = sqrt(nu / (1 - b2^t) + eps_root) + eps     (ScaleByAdamState; optax's too)
    sophia:       P = max(gamma h, eps)                          (ScaleBySophiaState; the unclipped step)

The state is found by its type's name (`optax.tree_utils.tree_get`), so it can sit inside
`build`'s `inject_hyperparams` and `chain` (or a vmapped copy of them).
"""

import inspect

import jax
import jax.numpy as jnp
import optax

from sandbox.errors import SandboxError
from sandbox.optim.registry import resolve


def _find(opt_state, type_name: str):
    found = optax.tree_utils.tree_get(opt_state, type_name)
    if found is None:
        raise SandboxError(f"the optimizer state holds no {type_name}, so it has no preconditioner to read")
    return found


def _adam(hyper: dict, opt_state):
    adam = _find(opt_state, "ScaleByAdamState")
    b2, eps, eps_root = hyper["b2"], hyper["eps"], hyper["eps_root"]
    return jax.tree.map(lambda v: jnp.sqrt(v / (1 - b2**adam.count) + eps_root) + eps, adam.nu)


def _sophia(hyper: dict, opt_state):
    sophia = _find(opt_state, "ScaleBySophiaState")
    return jax.tree.map(lambda h: jnp.maximum(hyper["gamma"] * h, hyper["eps"]), sophia.hess)


PRECONDITIONERS = {
    "adam": _adam, "adamw": _adam, "sophia": _sophia,
    "optax.adam": _adam, "optax.adamw": _adam, "optax.nadam": _adam, "optax.nadamw": _adam,
}


def has_preconditioner(name: str) -> bool:
    """Whether optimizer `name` registers a diagonal preconditioner."""
    return name in PRECONDITIONERS


def preconditioner(name: str, args: dict, opt_state):
    """P (a positive pytree like the params) of optimizer `name` built with `args`, read from
    its state `opt_state`; None for an optimizer without a diagonal preconditioner."""
    if name not in PRECONDITIONERS:
        return None
    defaults = {k: p.default for k, p in inspect.signature(resolve(name)).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return PRECONDITIONERS[name]({**defaults, **args}, opt_state)
