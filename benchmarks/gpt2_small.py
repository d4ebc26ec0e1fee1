"""GPT-2 small (`model=gpt2_small`): its memory estimate, and a few training steps at a tiny batch.

    python benchmarks/gpt2_small.py [--batch 1] [--seq 1024] [--steps 3] [--sharding fsdp --devices 8]

A smoke test, not a result: the model is GPT-2 small's shape (124M parameters, vocabulary 50,257, the
size of GPT-2's BPE) on random token ids, so nothing is downloaded or tokenized. It prints
`sandbox.train.memory.step_bytes` per device for the run and for a few larger shapes, the peak XLA's
memory analysis gives for the compiled step (arguments + outputs + temporaries), and time per step.
"""

import argparse
import os
import sys
import time

if "--devices" in sys.argv:  # simulated CPU devices must be set before jax starts
    count = sys.argv[sys.argv.index("--devices") + 1]
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sandbox import optim  # noqa: E402
from sandbox.nn import transformer  # noqa: E402
from sandbox.train import config, memory  # noqa: E402
from sandbox.train import mesh as mesh_lib  # noqa: E402
from sandbox.train.step import init_state, make_train_step  # noqa: E402


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--sharding", default="replicated")
    p.add_argument("--devices", type=int, default=1)
    a = p.parse_args(argv)
    cfg = config.load("configs/tiny.yaml", ["model=gpt2_small", f"model.seq_len={a.seq}", f"train.batch_size={a.batch}",
                                            f"train.sharding={a.sharding}", f"train.num_devices={a.devices}"])
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    print(f"gpt2_small: {transformer.num_params(cfg.model):,} parameters, vocabulary {cfg.model.vocab_size:,}")
    for batch, seq, devices, sharding in [(a.batch, a.seq, a.devices, a.sharding), (8, 1024, 1, "replicated"),
                                          (8, 1024, 8, "replicated"), (8, 1024, 8, "fsdp")]:
        shaped = config.load("configs/tiny.yaml", ["model=gpt2_small", f"model.seq_len={seq}",
                                                   f"train.batch_size={batch}", f"train.sharding={sharding}"])
        parts = memory.step_bytes(shaped, optimizer, devices)
        print(f"estimate, batch {batch} x {seq}, {devices} device(s), {sharding}: "
              f"{_mib(sum(parts.values()))} per device ({', '.join(f'{k} {_mib(v)}' for k, v in parts.items())})")

    mesh = mesh_lib.make_mesh(a.devices, a.batch, a.sharding, cfg.train.model_parallel)
    state = jax.jit(lambda k: init_state(k, cfg, optimizer))(jax.random.PRNGKey(0))
    placed = mesh_lib.state_shardings(state, mesh, a.sharding)
    state = jax.device_put(state, placed)
    ids_N = jax.device_put(np.random.default_rng(0).integers(0, cfg.model.vocab_size, 200_000, dtype=np.int32),
                           mesh_lib.replicated(mesh))
    step = jax.jit(mesh_lib.keep_placed(make_train_step(cfg, optimizer, mesh_lib.batch_sharded(mesh)), placed),
                   donate_argnums=0)
    key = jax.random.PRNGKey(1)
    compiled = step.lower(state, ids_N, key).compile()
    m = compiled.memory_analysis()
    peak = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    print(f"XLA memory analysis of the compiled step: {_mib(peak)} (all devices of this process)")
    print(mesh_lib.describe(mesh, a.sharding, mesh_lib.state_bytes_per_device(state, placed)))
    for i in range(a.steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, ids_N, key)
        loss = float(metrics["train_loss"])
        print(f"step {i + 1}: train_loss {loss:.4f} ({np.log(cfg.model.vocab_size):.4f} = log V at init), "
              f"{time.perf_counter() - t0:.1f} s, {a.batch * a.seq / (time.perf_counter() - t0):,.0f} tokens/s")


if __name__ == "__main__":
    main()
