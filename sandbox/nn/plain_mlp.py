"""A plain MLP classifier as pure functions (the curvature experiments, the Bayes tests and benchmarks):
params {"layer_i": {"w", "b"}}, x -> act(x W + b) ... W + b (no activation after the last layer)."""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "gelu": jax.nn.gelu}


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise SandboxError(f"activation={name!r} is not known; valid: {', '.join(ACTIVATIONS)}")


def init(key: jax.Array, sizes: list[int], dtype=jnp.float32) -> dict:
    """Weights W_i ~ N(0, 1/fan_in) (LeCun), zero biases, for layer widths `sizes` (input first)."""
    keys = jax.random.split(key, len(sizes) - 1)
    return {f"layer_{i}": {"w": jax.random.normal(k, (a, b), dtype) / np.sqrt(a), "b": jnp.zeros(b, dtype)}
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))}


def apply(params: dict, x_NxD: jax.Array, activation: str = "tanh") -> jax.Array:
    """The outputs (no activation after the last layer)."""
    act = ACTIVATIONS[activation]
    n = len(params)
    for i in range(n):
        layer = params[f"layer_{i}"]
        x_NxD = x_NxD @ layer["w"] + layer["b"]
        if i < n - 1:
            x_NxD = act(x_NxD)
    return x_NxD
