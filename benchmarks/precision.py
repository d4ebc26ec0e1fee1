"""Precision policies side by side: tokens/s of the engine's train step and bytes of params + optimizer state.

    python benchmarks/precision.py [--model tiny] [--batch 16] [--steps 20] [--repeats 3]

Each policy (train.precision x train.update_rounding) builds the engine's own jitted step
(sandbox.train.step.make_train_step, one-device mesh, state donated) on a random byte stream; blocks
of `--steps` calls alternate between policies and the median block gives tokens/s, reported as a
ratio to fp32. Memory is counted from the state's arrays: params (in the param dtype), optimizer
state (float32 under every policy) and the policy's own state (Kahan buffer, loss scale).
On CPU, XLA emulates bfloat16/float16 arithmetic through float32 converts, so low precision is
usually slower here; the memory column is what carries over to accelerators.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from sandbox import optim  # noqa: E402
from sandbox.train import config as config_lib  # noqa: E402
from sandbox.train import mesh as mesh_lib  # noqa: E402
from sandbox.train.precision import state_bytes  # noqa: E402
from sandbox.train.step import init_state, make_train_step  # noqa: E402

POLICIES = [("fp32", "nearest"), ("mixed_bf16", "nearest"), ("mixed_fp16", "nearest"), ("bf16", "nearest"),
            ("bf16", "stochastic"), ("bf16", "kahan"), ("fp16", "nearest")]


def build(model: str, batch: int, precision: str, rounding: str):
    cfg = config_lib.load(ROOT / "configs" / "tiny.yaml", [f"model={model}", "model.vocab_size=256",
                                                           f"train.batch_size={batch}", f"train.precision={precision}",
                                                           f"train.update_rounding={rounding}"])
    mesh = mesh_lib.make_mesh(1, batch)
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    state = jax.jit(lambda k: init_state(k, cfg, optimizer))(jax.random.PRNGKey(0))
    memory = {"params": state_bytes(state.params), "optimizer": state_bytes(state.opt_state),
              "policy": state_bytes(getattr(state, "numerics", None))}
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 256, 200_000), jnp.int32)
    step = jax.jit(make_train_step(cfg, optimizer, mesh_lib.batch_sharded(mesh)), donate_argnums=0)
    compiled = step.lower(state, ids, jax.random.PRNGKey(1)).compile()
    box = [state]

    def run(n):
        for _ in range(n):
            box[0], metrics = compiled(box[0], ids, jax.random.PRNGKey(1))
        jax.block_until_ready(metrics)

    return run, memory, batch * cfg.model.seq_len


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = {}
    for precision, rounding in POLICIES:
        run, memory, tokens = build(args.model, args.batch, precision, rounding)
        run(2)  # warm up
        runs[f"{precision}/{rounding}"] = (run, memory, tokens, [])
    for _ in range(args.repeats):  # alternate policies so a shared machine's load hits them alike
        for run, _, tokens, speeds in runs.values():
            t0 = time.perf_counter()
            run(args.steps)
            speeds.append(tokens * args.steps / (time.perf_counter() - t0))
    print(f"model={args.model} batch={args.batch} steps/block={args.steps} repeats={args.repeats} "
          f"cpus={os.cpu_count()} load average={os.getloadavg()[0]:.1f} jax={jax.__version__}")
    base = statistics.median(next(iter(runs.values()))[3])
    base_mem = sum(next(iter(runs.values()))[1].values())
    print(f"{'policy':22s} {'tokens/s':>9s} {'vs fp32':>8s} {'params':>9s} {'opt state':>10s} {'policy':>8s} "
          f"{'total':>9s} {'vs fp32':>8s}")
    for name, (_, memory, _, speeds) in runs.items():
        speed, total = statistics.median(speeds), sum(memory.values())
        print(f"{name:22s} {speed:9.0f} {speed / base:8.2f} {memory['params']:9d} {memory['optimizer']:10d} "
              f"{memory['policy']:8d} {total:9d} {total / base_mem:8.2f}")


if __name__ == "__main__":
    main()
