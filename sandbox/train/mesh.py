"""Parallelism on JAX's own engine: a device `Mesh` and named shardings for the batch and the state.

`train.sharding` says how the parameters and the optimizer state lie on the mesh:

  replicated  mesh ("data",): every device holds all of the state; the batch is split along "data"
              and jit inserts the all-reduce of gradients itself (data parallelism).
  fsdp        mesh ("data",): as above, but every array of the state is also split along "data" on
              its largest axis that divides evenly (fully sharded data parallelism, ZeRO-3): each
              device keeps about 1/n of the parameters and optimizer state; XLA gathers them per use.
  fsdp_tp     mesh ("data", "model") with `train.model_parallel` devices on "model": attention heads
              (columns of q, k, v; rows of o) and MLP hidden units (columns of up/gate; rows of down)
              split over "model" (Megatron's tensor parallelism), every array's other axis over "data".

All three are the same mathematics: GSPMD partitions the one jitted program, so the numbers equal the
one-device run up to float rounding. Sharding rules go by the parameter's path, so they apply to the
optimizer state's copies of the parameters (Adam's mu, nu) as well; scalars are replicated.
"""

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sandbox.errors import SandboxError

COLUMN_PARALLEL = ("attn/q/w", "attn/k/w", "attn/v/w", "mlp/up/w", "mlp/gate/w")  # D x out: split out
ROW_PARALLEL = ("attn/o/w", "mlp/down/w")  # in x D: split in


def make_mesh(num_devices: int, batch_size: int, sharding: str = "replicated", model_parallel: int = 1) -> Mesh:
    """A mesh over the first `num_devices` devices (0: all, of every process); the batch must split
    evenly over the "data" axis, which under fsdp_tp has num_devices / model_parallel devices."""
    available = jax.devices()
    n = num_devices or len(available)
    if n > len(available):
        raise SandboxError(f"train.num_devices={n} but only {len(available)} devices are visible")
    if sharding != "replicated" and jax.process_count() > 1:
        raise SandboxError(f"train.sharding={sharding} across {jax.process_count()} processes is not supported yet "
                           "(a checkpoint save copies the whole state to every host); use train.sharding=replicated")
    tp = model_parallel if sharding == "fsdp_tp" else 1
    if n % tp:
        raise SandboxError(f"train.model_parallel={tp} does not divide the {n} devices; choose a divisor of {n}")
    dp = n // tp
    if batch_size % dp:
        raise SandboxError(
            f"train.batch_size={batch_size} does not split over the {dp} devices of the data axis: "
            f"use a multiple of {dp} or set train.num_devices"
        )
    devices = np.asarray(available[:n])
    if sharding == "fsdp_tp":
        return Mesh(devices.reshape(dp, tp), ("data", "model"))
    return Mesh(devices, ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def check_model_parallel(model_cfg, sharding: str, model_parallel: int) -> None:
    """fsdp_tp splits heads and hidden units evenly over "model": refuse sizes that do not divide."""
    if sharding != "fsdp_tp":
        return
    sizes = {"n_heads": model_cfg.n_heads, "n_kv_heads": model_cfg.kv_heads, "d_ff": model_cfg.d_ff}
    for name, size in sizes.items():
        if size % model_parallel:
            raise SandboxError(f"train.sharding=fsdp_tp splits model.{name}={size} over "
                               f"train.model_parallel={model_parallel} devices; choose a divisor of it")


def _spec(path: str, shape: tuple, mesh: Mesh, sharding: str, lead: int) -> PartitionSpec:
    """The PartitionSpec of one state array; the first `lead` axes (a seed axis) stay whole."""
    axes = [None] * len(shape)
    own = list(range(lead, len(shape)))
    if sharding == "replicated" or not own:
        return PartitionSpec(*axes)
    if sharding == "fsdp_tp" and len(own) == 2:
        tp_axis = own[1] if path.endswith(COLUMN_PARALLEL) else own[0] if path.endswith(ROW_PARALLEL) else None
        if tp_axis is not None and shape[tp_axis] % mesh.shape["model"] == 0:
            axes[tp_axis] = "model"
            own.remove(tp_axis)
    dp = mesh.shape["data"]
    fits = [i for i in own if shape[i] % dp == 0]
    if fits:
        axes[max(fits, key=lambda i: shape[i])] = "data"
    return PartitionSpec(*axes)


def _path(keys) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in keys)


def state_shardings(abstract_state, mesh: Mesh, sharding: str, lead: int = 0):
    """NamedShardings, leaf for leaf, of a state pytree (params, opt state, TrainState) per `sharding`."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: NamedSharding(mesh, _spec(_path(p), tuple(x.shape), mesh, sharding, lead)), abstract_state)


def keep_placed(step, shardings):
    """step(state, *args) -> (state, out) with the new state constrained to `shardings` (where it came from)."""
    def placed_step(state, *args):
        state, out = step(state, *args)
        return jax.lax.with_sharding_constraint(state, shardings), out
    return placed_step


def _bytes(tree, shardings) -> int:
    leaves = jax.tree.leaves(tree)
    placed = jax.tree.leaves(shardings, is_leaf=lambda s: isinstance(s, NamedSharding))
    return sum(math.prod(s.shard_shape(tuple(x.shape))) * x.dtype.itemsize for x, s in zip(leaves, placed))


def state_bytes_per_device(state, shardings) -> dict[str, int]:
    """{"params": bytes, "opt_state": bytes} that one device holds of a TrainState placed by `shardings`."""
    return {k: _bytes(getattr(state, k), getattr(shardings, k)) for k in ("params", "opt_state")}


def describe(mesh: Mesh, sharding: str, per_device: dict[str, int]) -> str:
    """One line: the mesh, the sharding, and what one device holds of the state."""
    axes = " x ".join(f"{name} {size}" for name, size in mesh.shape.items())
    held = ", ".join(f"{k} {v / 2**20:,.2f} MiB" for k, v in per_device.items())
    return f"mesh {axes} ({mesh.size} devices), train.sharding={sharding}: per device {held}"
