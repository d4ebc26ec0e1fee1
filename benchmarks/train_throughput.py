"""Training throughput of the engine's jitted train step: tokens/s and model FLOP utilization.

    python benchmarks/train_throughput.py [--model small] [--batch 32] [--repeats 5] [--steps 6]
                                          [--fuse 20] [--matmul 2048] [--no-torch] [--profile DIR]

The step is the engine's own (sandbox.train.step.make_train_step with optim.build and a
one-device mesh, jitted with the state donated, as sandbox/train/loop.py builds it), on a
random byte stream: one step per call, and `--fuse` steps per call in one lax.scan
(sandbox.train.step.scan_steps: how the engine runs the steps between two log points; the
default is configs/tiny.yaml's train.log_every). Beside
it, the same model and step in PyTorch eager (benchmarks/_torch_lm.py) with as many threads as
JAX's CPU backend uses, if torch is installed. `--profile DIR` also traces a few single steps
with jax.profiler and prints XLA's time per op class (summed over its threads).

Model FLOPs per token, counting a multiply-add as 2 FLOPs and the backward pass as twice the
forward (a gradient for the input and one for the weight of every matmul):
    6 N + 12 n_layers L D,   N = n_layers (4 D^2 + 2 D F) + D V  (weights used in matmuls),
where 12 n_layers L D is q k^T and (weights) v over all L x L positions, as the sandbox computes
them (masked, not skipped). XLA's own count (compiled.cost_analysis) is printed beside it.
MFU is model FLOP/s over the dense-matmul peak measured in the same run: a jitted float32
M x M matmul, timed just before each block of steps, so MFU compares like with like even when
other processes share the cores. Blocks of the sandbox and torch alternate; figures are medians.
"""

import argparse
import collections
import gzip
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from sandbox import optim  # noqa: E402
from sandbox.nn import transformer  # noqa: E402
from sandbox.train import config as config_lib  # noqa: E402
from sandbox.train import mesh as mesh_lib  # noqa: E402
from sandbox.train.step import init_state, make_train_step, scan_steps  # noqa: E402

SANDBOX = "sandbox (engine step)"


def model_flops_per_token(m) -> int:
    """6 N + 12 n_layers L D (see the module docstring)."""
    mlp = 3 if m.mlp == "swiglu" else 2
    n_matmul = m.n_layers * (4 * m.d_model**2 + mlp * m.d_model * m.d_ff) + m.d_model * m.vocab_size
    return 6 * n_matmul + 12 * m.n_layers * m.seq_len * m.d_model


def sandbox_step(cfg, fuse: int):
    """(run() -> metrics, XLA's FLOPs per call): `fuse` engine steps per call (lax.scan), state donated."""
    mesh = mesh_lib.make_mesh(1, cfg.train.batch_size)
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    step = make_train_step(cfg, optimizer, mesh_lib.batch_sharded(mesh))
    if fuse > 1:
        step = scan_steps(step, fuse)
    state = jax.jit(lambda k: init_state(k, cfg, optimizer))(jax.random.PRNGKey(0))
    ids_N = jax.device_put(jnp.asarray(_stream(), jnp.int32), mesh_lib.replicated(mesh))
    data_key = jax.random.PRNGKey(1)
    compiled = jax.jit(step, donate_argnums=0).lower(state, ids_N, data_key).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    box = [state]

    def run():
        box[0], metrics = compiled(box[0], ids_N, data_key)
        return metrics

    return run, float(cost.get("flops", float("nan")))


def torch_step(cfg, threads: int):
    """run() for the PyTorch peer, or None (with the reason printed) if torch is missing."""
    try:
        import torch
        from _torch_lm import make_train_step as torch_train_step
    except ImportError as e:
        print(f"PyTorch peer skipped: {e} (pip install torch==2.13.0 to compare)")
        return None
    torch.set_num_threads(threads)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    return torch_train_step(cfg, cfg.optimizer, cfg.train.batch_size, _stream())


def _stream(n: int = 1 << 20):
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.int32)


def matmul_peak(size: int):
    """peak() -> GFLOP/s of a jitted float32 size x size matmul (best of 2 calls)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
    mm(a, a).block_until_ready()

    def peak():
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            mm(a, a).block_until_ready()
            best = min(best, time.perf_counter() - t0)
        return 2 * size**3 / best / 1e9

    return peak


def op_class(thunk: str) -> str:
    """The kind of an XLA CPU thunk, from its HLO name (ynn_fusion.12 -> YNNPACK dot, ...)."""
    name = thunk.rsplit(".", 1)[0] if thunk.rsplit(".", 1)[-1].isdigit() else thunk
    if name.startswith("ynn_fusion"):
        return "dots (YNNPACK)"
    if name.startswith("dot"):
        return "dots (XLA/Eigen)"
    if name.startswith("copy_bitcast_fusion"):
        return "copy_bitcast_fusion (elementwise + transposed write)"
    if "copy" in name or "transpose" in name:
        return "other copies / transposes"
    if name in ("while", "call", "conditional"):
        return "control flow"
    return "elementwise / reductions / other fusions"


def profile_shares(run, folder: str, calls: int = 3) -> tuple[float, dict]:
    """(thunk seconds per call, {op class: share of thunk time}) from a jax.profiler trace of `calls` calls."""
    with jax.profiler.trace(folder, create_perfetto_trace=True):
        jax.block_until_ready([run() for _ in range(calls)])
    trace = json.load(gzip.open(next(pathlib.Path(folder).rglob("perfetto_trace.json.gz"))))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total = collections.Counter()
    for e in events:  # thunks are named by their HLO instruction: no spaces, colons or '$' (Python frames)
        name = e.get("name", "")
        if e.get("ph") == "X" and not any(c in name for c in " :$()") and not name.startswith(("Slinky", "Pjrt")):
            total[op_class(name)] += e.get("dur", 0) * 1e-6
    seconds = sum(total.values())
    return seconds / calls, {k: v / seconds for k, v in total.most_common()}


def seconds_per_call(run, calls: int, sync) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        out = run()
    sync(out)
    return (time.perf_counter() - t0) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", help="a name in configs/model/")
    parser.add_argument("--batch", type=int, default=None, help="default: configs/tiny.yaml's train.batch_size")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per system (median)")
    parser.add_argument("--steps", type=int, default=6, help="train steps per timed block")
    parser.add_argument("--fuse", type=int, default=None,
                        help="also time this many steps per call in a lax.scan (1: off; default: train.log_every)")
    parser.add_argument("--matmul", type=int, default=2048, help="M of the M x M peak matmul")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--profile", default=None, help="trace the single step into this folder; print op shares")
    args = parser.parse_args()

    overrides = [f"model={args.model}", "optimizer=adamw"] + ([f"train.batch_size={args.batch}"] if args.batch else [])
    cfg = config_lib.load(ROOT / "configs" / "tiny.yaml", overrides)
    m, batch = cfg.model, cfg.train.batch_size
    fuse = cfg.train.log_every if args.fuse is None else args.fuse
    threads = len(os.sched_getaffinity(0))
    tokens = batch * m.seq_len
    flops = model_flops_per_token(m) * tokens
    print(f"model={args.model} ({transformer.num_params(m):,} parameters), batch {batch} x {m.seq_len} = "
          f"{tokens} tokens/step, AdamW, {jax.devices()[0].device_kind} x {threads} cores, "
          f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    t0 = time.perf_counter()
    sandbox_run, xla_flops = sandbox_step(cfg, 1)
    print(f"sandbox step compiled in {time.perf_counter() - t0:.1f} s")
    print(f"model GFLOP/step: analytic {flops / 1e9:.2f}, XLA cost analysis {xla_flops / 1e9:.2f}")
    peak = matmul_peak(args.matmul)
    systems = {SANDBOX: (sandbox_run, 1, jax.block_until_ready)}
    if fuse > 1:
        systems[f"sandbox, scan of {fuse}"] = (sandbox_step(cfg, fuse)[0], fuse, jax.block_until_ready)
    torch_run = None if args.no_torch else torch_step(cfg, threads)
    if torch_run is not None:
        systems["pytorch eager"] = (torch_run, 1, lambda out: out.item())
    for run, _, sync in systems.values():  # warm up
        sync(run())
    if args.profile:
        seconds, shares = profile_shares(sandbox_run, args.profile)
        print(f"profile of {SANDBOX}: {seconds * 1e3:.0f} ms of XLA thunk time per step (summed over threads)")
        for name, share in shares.items():
            print(f"    {share:6.1%}  {name}")

    seconds = {name: [] for name in systems}
    mfu = {name: [] for name in systems}
    peaks = []
    for r in range(args.repeats):
        order = list(systems) if r % 2 == 0 else list(reversed(systems))
        for name in order:
            run, per_call, sync = systems[name]
            peaks.append(peak())
            s = seconds_per_call(run, max(args.steps // per_call, 1), sync) / per_call
            seconds[name].append(s)
            mfu[name].append(flops / s / 1e9 / peaks[-1])

    print(f"load average after:  {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"(medians of {args.repeats} blocks of {args.steps} steps; load above {threads}: shared cores)")
    print(f"measured peak (float32 {args.matmul}^2 matmul, jit): {statistics.median(peaks):.1f} GFLOP/s "
          f"(min {min(peaks):.1f}, max {max(peaks):.1f})")
    print(f"{'':<24}{'tokens/s':>10}{'ms/step':>10}{'model GFLOP/s':>15}{'MFU':>8}")
    for name in systems:
        s = statistics.median(seconds[name])
        print(f"{name:<24}{tokens / s:>10.0f}{s * 1e3:>10.1f}{flops / s / 1e9:>15.2f}"
              f"{statistics.median(mfu[name]):>8.1%}")
    if torch_run is not None:
        for name in (n for n in systems if n.startswith("sandbox")):
            ratios = [t / s for s, t in zip(seconds[name], seconds["pytorch eager"])]
            print(f"{name} / pytorch tokens/s: {statistics.median(ratios):.2f}x (per repeat: "
                  f"{', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
