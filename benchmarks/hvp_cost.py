"""What a Hessian-vector product costs against a gradient: alone, and per step of a jitted Lanczos (CPU).

    python benchmarks/hvp_cost.py [--mlps 64,256,256,10:512 100,256,256,10:2048] [--steps 20] [--repeats 10]

For each tanh MLP with cross-entropy (`SIZES:EXAMPLES`; by default one of 85,002 parameters and
curvature_vs_pyhessian's own of 94,218), side by side in one run:
- the gradient (`jax.grad` of the loss, one program): the unit;
- one HVP (`curvature.hessian(...).matvec`): forward and backward pass at w, then their tangents;
- the tangent program alone (`LinearOperator.linearized`, residuals of the pass at w computed before);
- per step of a jitted `steps`-step Lanczos, plain (the pass at w re-run each step, unless XLA hoists
  it) and linearized (once per run, as every curvature solver now does), less the cost of the same
  Lanczos on a diagonal operator (its Gram-Schmidt and bookkeeping).
Beside the times: XLA's flop count of each single program and the temporary memory of both Lanczos
programs (the linearized one keeps the residuals). Times are the best of `repeats` interleaved calls
after a warm-up; the ratios are what to compare across machines.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from curvature_vs_pyhessian import init_mlp, loss, make_data, train

from sandbox import curvature
from sandbox.curvature import linop


def _diagonal_rule(d_N, v_N):
    return d_N * v_N


def _flops(jitted, *args) -> float:
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan")))


def _temp_mb(jitted, *args) -> float:
    return jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def measure(sizes, examples, steps, repeats) -> dict:
    k_init, k_data, k_v = jax.random.split(jax.random.key(0), 3)
    batch = make_data(k_data, examples, sizes)
    params = train(init_mlp(k_init, sizes), batch)
    op = curvature.hessian(loss, params, batch)
    v_N = jax.random.normal(k_v, (op.dim,))
    linear = jax.jit(lambda op: op.linearized())(op)  # residuals as concrete arrays
    diag = curvature.LinearOperator(_diagonal_rule, jnp.linspace(1.0, 2.0, op.dim), op.layout)
    grad = jax.jit(jax.grad(loss))
    matvec = jax.jit(lambda op, v: op.mv(v))
    plain = jax.jit(lambda op, v: curvature.lanczos(op, v, steps))
    linearized = jax.jit(lambda op, v: curvature.lanczos(op.linearized(), v, steps))
    programs = {"gradient": (grad, (params, batch)), "HVP": (matvec, (op, v_N)),
                "tangent only": (matvec, (linear, v_N)), "lanczos plain": (plain, (op, v_N)),
                "lanczos linearized": (linearized, (op, v_N)), "lanczos overhead": (plain, (diag, v_N))}
    times = {name: [] for name in programs}
    for fn, args in programs.values():
        jax.block_until_ready(fn(*args))  # compile and warm up
    for _ in range(repeats):
        for name, (fn, args) in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    t = {name: float(np.min(ts)) for name, ts in times.items()}
    flops = {name: _flops(programs[name][0], *programs[name][1]) for name in ("gradient", "HVP", "tangent only")}
    return {"dim": op.dim, "examples": examples, "sizes": sizes, "t": t, "flops": flops,
            "residual_mb": sum(x.nbytes for x in jax.tree_util.tree_leaves(linear.operands)) / 2**20,
            "temp_mb": {k: _temp_mb(programs[k][0], *programs[k][1]) for k in ("lanczos plain", "lanczos linearized")}}


def solvers(sizes, examples, repeats) -> dict:
    """Seconds of each solver with the operator linearized (default) and not (budget 0): both compiled
    ahead (the budget applies when the solver is traced), then timed interleaved."""
    k_init, k_data, k_solve = jax.random.split(jax.random.key(0), 3)
    batch = make_data(k_data, examples, sizes)
    op = curvature.hessian(loss, train(init_mlp(k_init, sizes), batch), batch)
    runs = {"top-1, 15 Lanczos steps": lambda op, key: curvature.top_eigenpairs(op, 1, key=key, num_steps=15),
            "top-20, 60 Lanczos steps": lambda op, key: curvature.top_eigenpairs(op, 20, key=key, num_steps=60),
            "SLQ, 4 probes x 40 steps": lambda op, key: curvature.slq_nodes_weights(op, key=key, num_steps=40,
                                                                                    num_probes=4),
            "Hutch++, 99 matvecs": lambda op, key: curvature.trace(op, key=key, num_matvecs=99),
            "power iteration, 30 steps": lambda op, key: curvature.power_iteration(op, 1, key=key, num_steps=30)}
    compiled, default = {}, linop.LINEARIZE_MAX_BYTES
    try:
        for mode, budget in (("plain", 0), ("linearized", default)):
            linop.LINEARIZE_MAX_BYTES = budget
            jax.clear_caches()  # retrace the solvers under this budget
            for name, fn in runs.items():
                compiled[(name, mode)] = jax.jit(fn).lower(op, k_solve).compile()
    finally:
        linop.LINEARIZE_MAX_BYTES = default
    times = {key: [] for key in compiled}
    for fn in compiled.values():
        jax.block_until_ready(fn(op, k_solve))  # warm up
    for _ in range(repeats):
        for key, fn in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(op, k_solve))
            times[key].append(time.perf_counter() - t0)
    return {key: float(np.min(ts)) for key, ts in times.items()}


def report_solvers(t):
    print(f"  {'solver (seconds, best of repeats)':50s} {'plain':>8s} {'linearized':>10s} {'speed-up':>8s}")
    for name in dict.fromkeys(n for n, _ in t):
        plain, lin = t[(name, "plain")], t[(name, "linearized")]
        print(f"  {name:50s} {plain:8.3f} {lin:10.3f} {plain / lin:7.2f}x")


def report(r, steps):
    t, g = r["t"], r["t"]["gradient"]
    per_step = {k: (t[f"lanczos {k}"] - t["lanczos overhead"]) / steps for k in ("plain", "linearized")}
    print(f"\nMLP {'-'.join(map(str, r['sizes']))}, {r['dim']:,} parameters, {r['examples']} examples")
    rows = [("gradient", g, r["flops"]["gradient"]), ("one HVP (own program)", t["HVP"], r["flops"]["HVP"]),
            ("tangent program alone (residuals given)", t["tangent only"], r["flops"]["tangent only"]),
            (f"per step, jitted {steps}-step Lanczos, plain", per_step["plain"], None),
            (f"per step, jitted {steps}-step Lanczos, linearized", per_step["linearized"], None)]
    print(f"  {'':50s} {'ms':>8s} {'/ gradient':>10s} {'GFLOP':>7s} {'flops / gradient':>16s}")
    for name, sec, fl in rows:
        fl_cols = f"{fl / 1e9:7.3f} {fl / r['flops']['gradient']:16.2f}" if fl else ""
        print(f"  {name:50s} {sec * 1e3:8.2f} {sec / g:10.2f} {fl_cols}")
    print(f"  (Lanczos bookkeeping on a diagonal operator: {t['lanczos overhead'] / steps * 1e3:.2f} ms/step, "
          "subtracted above)")
    temp = r["temp_mb"]
    print(f"  memory: residuals of the pass at w {r['residual_mb']:.1f} MiB; XLA temporaries of the Lanczos "
          f"program plain {temp['lanczos plain']:.1f} MiB, linearized {temp['lanczos linearized']:.1f} MiB")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mlps", nargs="+", default=["64,256,256,10:512", "100,256,256,10:2048"],
                   help="layer sizes and number of examples, SIZES:EXAMPLES")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--solver-repeats", type=int, default=3)
    a = p.parse_args(argv)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float32")
    for spec in a.mlps:
        sizes, examples = spec.split(":")
        sizes, examples = tuple(int(s) for s in sizes.split(",")), int(examples)
        report(measure(sizes, examples, a.steps, a.repeats), a.steps)
        report_solvers(solvers(sizes, examples, a.solver_repeats))


if __name__ == "__main__":
    main()
