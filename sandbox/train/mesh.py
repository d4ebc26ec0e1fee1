"""Data parallelism on JAX's own engine: a 1-D `Mesh` with axis "data".

The batch is split along "data" and the parameters are replicated, so jit inserts the
all-reduce of gradients itself; the numbers equal the one-device run up to float rounding.
"""

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sandbox.errors import SandboxError


def make_mesh(num_devices: int, batch_size: int) -> Mesh:
    """A mesh over the first `num_devices` devices (0: all); the batch must split evenly."""
    available = jax.devices()
    n = num_devices or len(available)
    if n > len(available):
        raise SandboxError(f"train.num_devices={n} but only {len(available)} devices are visible")
    if batch_size % n:
        raise SandboxError(
            f"train.batch_size={batch_size} does not split over {n} devices: "
            f"use a multiple of {n} or set train.num_devices"
        )
    return Mesh(available[:n], ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))
