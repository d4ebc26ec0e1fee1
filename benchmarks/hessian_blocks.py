"""`sandbox hessian RUN --top-k 10 --density --trace --blocks` with this checkout against an older revision.

Each command is a fresh `sandbox` process with the compilation cache off (cold: compile included). The
older revision (default `main`) is exported with `git archive` into a temporary folder and put first on
PYTHONPATH. RUN defaults to a tiny run trained here as the README does (`configs/tiny.yaml`, 100 steps).
Then, in this process, a profile of the new program: compile, the Lanczos scan alone, with SLQ, with
the trace (AOT-compiled `curvature.blocks._spectra`), and the host side (densities, figures).
Run: python benchmarks/hessian_blocks.py [--run RUN] [--old main] [--repeats 1]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HESSIAN = ["--top-k", "10", "--density", "--trace"]


def timed(args: list[str], pythonpath: str | None, cwd: str) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one `sandbox` command, cache off, run in `cwd` (not the checkout:
    `python -m` puts the working folder before PYTHONPATH)."""
    env = {**os.environ, "SANDBOX_COMPILE_CACHE": "0"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sandbox", *args], check=True, stdout=subprocess.DEVNULL, env=env, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def profile(run_dir: str) -> list[tuple[str, float]]:
    """Seconds of each part of the new program on the run's curvature batch (all targets at once)."""
    import jax
    import numpy as np

    from sandbox import analysis, curvature
    from sandbox.analysis import curvature as analysis_curvature
    from sandbox.analysis import figures
    from sandbox.nn import groups as groups_lib

    run = analysis.load(run_dir, None)
    opts = analysis_curvature.CurvatureOptions(density=True, trace=True, blocks=True)
    batch = run.eval_subset(1, 8).batch(0)
    op = analysis_curvature.operator("hessian", run.logits, run.params, batch, jax.random.key(0))
    names = ["all"] + groups_lib.blocks(run.groups() or groups_lib.infer(run.params))
    masks_TxN = curvature.blocks.masks(op.layout, names)
    order, sizes = curvature.blocks.packs(masks_TxN)
    rows = []
    for label, probes, matvecs in (("top-k", 0, 0), ("top-k + SLQ", opts.num_probes, 0),
                                   ("top-k + SLQ + trace", opts.num_probes, opts.num_matvecs)):
        vectors = len(names) * (1 + probes)
        args = (op, np.asarray(masks_TxN[order]), np.asarray(order), jax.random.key(1), opts.top_k, opts.num_steps,
                probes, matvecs, sizes, vectors, None)
        t0 = time.perf_counter()
        compiled = curvature.blocks._spectra.lower(*args).compile()
        rows.append((f"compile: {label}", time.perf_counter() - t0))
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args[:4]))
        rows.append((f"run: {label} ({len(names)} targets, {vectors} vectors a step)", time.perf_counter() - t0))
    t0 = time.perf_counter()
    result = analysis_curvature.of_run(run, opts)
    rows.append(("of_run, whole (compile + run + densities)", time.perf_counter() - t0))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        figures.curvature(result, Path(tmp))
        rows.append(("figures", time.perf_counter() - t0))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run folder (default: train configs/tiny.yaml for 100 steps here)")
    parser.add_argument("--old", default="main", help="the git revision to compare with")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = str(Path(args.run).resolve()) if args.run else str(Path(tmp) / "tiny")
        if not args.run:
            subprocess.run([sys.executable, "-m", "sandbox", "train", str(ROOT / "configs/tiny.yaml"),
                            "train.steps=100", "--out", run_dir], check=True, stdout=subprocess.DEVNULL)
        old = Path(tmp) / "old"
        old.mkdir()
        subprocess.run(f"git -C {ROOT} archive {args.old} | tar -x -C {old}", shell=True, check=True)
        rows = []
        for rep in range(args.repeats):
            for label, path, extra in ((f"{args.old}: --blocks", str(old), ["--blocks"]),
                                       ("this checkout: --blocks", None, ["--blocks"]),
                                       ("this checkout: without --blocks", None, [])):
                out = Path(tmp) / f"out-{rep}-{len(rows)}"
                wall, cpu = timed(["hessian", run_dir, *HESSIAN, *extra, "--out", str(out)], path, tmp)
                rows.append((label, wall, cpu))
                print(f"{label:36s} {wall:8.1f} s wall {cpu:8.1f} s CPU", flush=True)
        old_wall = min(w for label, w, _ in rows if label.startswith(args.old))
        new_wall = min(w for label, w, _ in rows if label == "this checkout: --blocks")
        print(f"--blocks speed-up (best of {args.repeats}): {old_wall / new_wall:.2f}x")
        if not args.no_profile:
            print("\nprofile of this checkout's program (in process, cache off):")
            os.environ["SANDBOX_COMPILE_CACHE"] = "0"
            for label, secs in profile(run_dir):
                print(f"  {label:60s} {secs:8.1f} s", flush=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
