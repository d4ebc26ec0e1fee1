"""Minimize a function with an optax optimizer: `steps` updates in one `lax.scan`, traceable under jit."""

import jax
import optax


def minimize(loss_fn, x, optimizer: optax.GradientTransformation, steps: int):
    """(x_T, losses_T): x_{t+1} = x_t + update(grad loss_fn(x_t)), t < steps; losses_T[t] = loss_fn(x_t)."""

    def step(carry, _):
        x, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(x)
        updates, state = optimizer.update(grads, state, x)
        return (optax.apply_updates(x, updates), state), loss

    (x, _), losses_T = jax.lax.scan(step, (x, optimizer.init(x)), None, length=steps)
    return x, losses_T
