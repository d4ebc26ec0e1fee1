"""How many vectors to push through a curvature operator at once: a loop of single HVPs vs vmapped batches.

    python benchmarks/vector_batch.py [--repeats 3] [--steps 40]

The solvers send their vectors through `linop.map_rows`, `batch_size` at a time (vmapped), the chunks
in a `lax.map` loop; `linop.vector_batch()` picks the default (1 on CPU). Side by side in one run, for
the `tiny` transformer LM (configs/model/tiny.yaml, 8 x 64 tokens) and two tanh MLPs:
- the linearized Hessian's matvec over 32 vectors, 1, 5 and 32 at a time: ms per vector;
- `curvature.blocks.spectra`'s shape of work, 5 Lanczos runs of `steps` steps (a top-k start and 4 SLQ
  probes), one after another vs the 5 vmapped together: ms per step per vector.
Times are the best of `repeats` interleaved calls after a warm-up; the ratios are what to compare.
"""

import argparse
import time

import jax
import numpy as np
from curvature_vs_pyhessian import init_mlp, loss, make_data, train

from sandbox import curvature, losses
from sandbox.curvature import linop
from sandbox.nn import transformer
from sandbox.train import config


def transformer_op():
    cfg = config.load("configs/tiny.yaml", []).model
    k_init, k_tok = jax.random.split(jax.random.key(0))
    tokens_BxL = jax.random.randint(k_tok, (8, cfg.seq_len + 1), 0, cfg.vocab_size)
    batch = {"inputs": tokens_BxL[:, :-1], "targets": tokens_BxL[:, 1:]}
    lm_loss = lambda p, b: losses.cross_entropy(transformer.apply(p, b["inputs"], cfg), b["targets"]).mean()  # noqa: E731
    return curvature.hessian(lm_loss, transformer.init(k_init, cfg), batch)


def mlp_op(sizes, examples):
    k_init, k_data = jax.random.split(jax.random.key(0))
    batch = make_data(k_data, examples, sizes)
    return curvature.hessian(loss, train(init_mlp(k_init, sizes), batch), batch)


def best(programs: dict, args, repeats: int) -> dict:
    for fn in programs.values():
        jax.block_until_ready(fn(*args))  # compile and warm up
    times = {name: [] for name in programs}
    for _ in range(repeats):
        for name, fn in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.min(ts)) for name, ts in times.items()}


def measure(op, steps: int, repeats: int) -> dict:
    v_PxN = jax.random.normal(jax.random.key(1), (32, op.dim), op.dtype)
    matvecs = {b: jax.jit(lambda op, v, b=b: linop.map_rows(op.linearized().mv, v, b)) for b in (1, 5, 32)}
    t_mv = best(matvecs, (op, v_PxN), repeats)
    lanczos = {b: jax.jit(lambda op, v, b=b: linop.map_rows(lambda v_N: curvature.lanczos(op.linearized(), v_N, steps),
                                                            v[:5], b).alphas_M) for b in (1, 5)}
    t_lz = best(lanczos, (op, v_PxN), repeats)
    return {"dim": op.dim, "matvec_ms": {b: 1e3 * t / 32 for b, t in t_mv.items()},
            "lanczos_ms": {b: 1e3 * t / (5 * steps) for b, t in t_lz.items()}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    a = p.parse_args(argv)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float32; default vector batch "
          f"{linop.vector_batch()}")
    ops = {"tiny transformer LM": transformer_op, "MLP 64-256-256-10, 512 ex.": lambda: mlp_op((64, 256, 256, 10), 512),
           "MLP 100-256-256-10, 2048 ex.": lambda: mlp_op((100, 256, 256, 10), 2048)}
    print(f"{'operator':30s} {'dim':>8s} | {'HVP ms/vector, batch 1':>22s} {'5':>7s} {'32':>7s} | "
          f"{'Lanczos ms/step/vector, batch 1':>31s} {'5':>7s} | {'batch 5 / loop':>14s}")
    for name, make in ops.items():
        r = measure(make(), a.steps, a.repeats)
        mv, lz = r["matvec_ms"], r["lanczos_ms"]
        print(f"{name:30s} {r['dim']:8,d} | {mv[1]:22.2f} {mv[5]:7.2f} {mv[32]:7.2f} | {lz[1]:31.2f} {lz[5]:7.2f} | "
              f"{lz[5] / lz[1]:13.2f}x")


if __name__ == "__main__":
    main()
