"""Peak memory of one training step, estimated before anything runs, against what the machine has.

  parameters + gradients + updates   3 x 4 P bytes (float32)
  optimizer state                    exact, from the shapes optimizer.init would make
(parameters and optimizer state are counted for 1 and 2 layers and extended linearly, c(L) =
c(1) + (L - 1)(c(2) - c(1)): each layer adds the same arrays, so this is exact, and no model of
L layers is ever traced, so an absurd depth is refused at once)
  activations kept for the backward  per layer B L (12 D + 2 F) + 2 B H L^2 floats (residual
                                     stream, norms, q/k/v, attention scores and weights, MLP),
                                     plus 3 B L V for the logits, their softmax and gradient
all times train.num_seeds. It is an estimate (XLA may fuse some activations away and needs some
scratch of its own), meant to refuse requests that cannot fit, not to budget tightly.
"""

import dataclasses

import jax

from sandbox.errors import SandboxError
from sandbox.nn import transformer

FLOAT_BYTES = 4


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def step_bytes(cfg, optimizer, num_devices: int = 1) -> dict[str, int]:
    """{"parameters", "gradients and updates", "optimizer state", "activations"} in bytes, all seeds.

    With `num_devices` > 1: what one device of a `train.sharding` mesh holds, about; the batch is split
    over the data axis (num_devices / train.model_parallel under fsdp_tp), the state over every device
    under fsdp and fsdp_tp (a few small arrays stay whole, ignored here) and not at all when replicated.
    """
    m, n = cfg.model, cfg.train.num_seeds
    sharding = cfg.train.sharding
    data_axis = max(1, num_devices // cfg.train.model_parallel) if sharding == "fsdp_tp" else num_devices
    b = -(-cfg.train.batch_size // data_axis)
    state_split = 1 if sharding == "replicated" else num_devices
    params = _by_depth(m, transformer.num_params) * FLOAT_BYTES // state_split
    opt = _by_depth(m, lambda small: _state_bytes(optimizer, small)) // state_split
    acts = activation_bytes(m, b)
    return {"parameters": n * params, "gradients and updates": 2 * n * params,
            "optimizer state": n * opt, "activations": n * acts}


def activation_bytes(m, b: int) -> int:
    """The activations one forward-backward keeps for `b` windows of model `m` (see the module docstring)."""
    per_layer = b * m.seq_len * (12 * m.d_model + 2 * m.d_ff) + 2 * b * m.n_heads * m.seq_len**2
    return (m.n_layers * per_layer + 3 * b * m.seq_len * m.vocab_size) * FLOAT_BYTES


def _by_depth(m, count) -> int:
    """count(m) from count at 1 and 2 layers, extended linearly to m.n_layers."""
    if m.n_layers <= 2:
        return count(m)
    one, two = (count(dataclasses.replace(m, n_layers=n)) for n in (1, 2))
    return one + (m.n_layers - 1) * (two - one)


def _state_bytes(optimizer, m) -> int:
    shapes = jax.eval_shape(lambda k: optimizer.init(transformer.init(k, m)), jax.random.PRNGKey(0))
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))


def available_bytes() -> tuple[int | None, str]:
    """(bytes free on the default device, its name); None when the device does not say."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        try:
            with open("/proc/meminfo") as f:
                info = dict(line.split(":", 1) for line in f)
            return int(info["MemAvailable"].split()[0]) * 1024, "this machine's RAM"
        except (OSError, KeyError, ValueError):
            return None, "this machine's RAM"
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None, str(device)
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.device_kind} {device.id}"


def describe(cfg, optimizer, extra_bytes: int = 0) -> str:
    """One line: the estimated peak of one step, its parts, and what is free where."""
    parts = step_bytes(cfg, optimizer)
    free, where = available_bytes()
    detail = ", ".join(f"{name} {_gib(v)}" for name, v in parts.items())
    room = f"; {_gib(free)} free in {where}" if free is not None else ""
    return (f"memory of one training step, estimated: {_gib(sum(parts.values()) + extra_bytes)} "
            f"({detail}, data {_gib(extra_bytes)}){room}")


def check(cfg, optimizer, extra_bytes: int = 0) -> int:
    """The estimated peak (plus `extra_bytes`, e.g. the token arrays); raise if it cannot fit."""
    parts = step_bytes(cfg, optimizer)
    total = sum(parts.values()) + extra_bytes
    free, where = available_bytes()
    if free is not None and total > free:
        detail = ", ".join(f"{name} {_gib(v)}" for name, v in parts.items())
        raise SandboxError(
            f"one training step needs about {_gib(total)} ({detail}) but only {_gib(free)} is free in {where}; "
            "lower train.batch_size, model.seq_len, the model's size or train.num_seeds"
        )
    return total


def check_activations(cfg, batch_size: int, copies: int, what: str) -> None:
    """Refuse `copies` times one forward-backward's activations at `batch_size` windows (an analysis's batch,
    e.g. a Hessian-vector product keeps about 3) if they cannot fit; `what` names the argument to lower."""
    need = copies * activation_bytes(cfg.model, batch_size)
    free, where = available_bytes()
    if free is not None and need > free:
        raise SandboxError(f"{what} {batch_size:,} needs about {_gib(need)} of activations but only {_gib(free)} "
                           f"is free in {where}; lower {what}")
