"""N seeds in one vmapped train step vs N runs one after another (tiny LM), side by side.

Prints wall time per step for both ways and their ratio for N = 1, 4, 8. Compilation is
excluded from both; the data and the models are the ones `sandbox train` would use.
Run: python benchmarks/seeds_vmap.py [--steps 20]
"""

import argparse
import os
import time

import jax

from sandbox import optim
from sandbox.text.data import as_device, load_dataset
from sandbox.train import config
from sandbox.train import mesh as mesh_lib
from sandbox.train.step import init_state, make_train_step, seed_keys


def time_steps(step, state, ids, key, steps):
    state, _ = step(state, ids, key)  # warm
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, ids, key)
    jax.block_until_ready(state)
    return (time.perf_counter() - t0) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    cfg = config.load("configs/tiny.yaml", ["train.num_devices=1"])
    data = load_dataset(cfg.data, cfg.model.seq_len)
    ids = as_device(data.train_N)
    opt = optim.build(cfg.optimizer, cfg.train.steps)
    sharding = mesh_lib.batch_sharded(mesh_lib.make_mesh(1, cfg.train.batch_size))
    single = make_train_step(cfg, opt, sharding)
    one_step = jax.jit(single, donate_argnums=0)
    many_step = jax.jit(jax.vmap(single, in_axes=(0, None, 0)), donate_argnums=0)
    print(f"tiny LM, batch {cfg.train.batch_size} x {cfg.model.seq_len}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'N':>3} {'sequential s/step':>18} {'vmapped s/step':>15} {'vmapped/sequential':>19}")
    for n in (1, 4, 8):
        pkeys, dkeys = seed_keys(0, n)
        init_one = jax.jit(lambda k: init_state(k, cfg, opt))
        sequential = sum(time_steps(one_step, init_one(pkeys[i]), ids, dkeys[i], args.steps) for i in range(n))
        state = jax.jit(jax.vmap(lambda k: init_state(k, cfg, opt)))(pkeys)
        vmapped = time_steps(many_step, state, ids, dkeys, args.steps)
        print(f"{n:>3} {sequential:>18.4f} {vmapped:>15.4f} {vmapped / sequential:>19.2f}")


if __name__ == "__main__":
    main()
