"""`sandbox hessian RUN_DIR`: curvature spectra of a run's checkpoint on a batch of its eval set.

Writes OUT/hessian.json (top_eigenvalues, residuals, trace, density {grid, values}, blocks (each with its
method: lanczos, or dense for a small block), eval_set)
and figures: density.png (log scale), top_eigenvalues.png, and with --blocks blocks_density.png.
OUT defaults to a new RUN_DIR/hessian-<timestamp>; an existing --out is replaced only with --force.
"""

from pathlib import Path

from sandbox.cli import argtypes


def add_parser(subparsers):
    from sandbox.analysis.curvature import OPERATORS

    p = subparsers.add_parser("hessian", help="Hessian/GGN/Fisher spectra of a run's checkpoint")
    p.add_argument("run_dir", help="a run folder made by `sandbox train`")
    p.add_argument("--step", type=argtypes.STEP, help="checkpoint step (default: the latest)")
    p.add_argument("--top-k", type=argtypes.SIZE, default=10, help="number of top eigenvalues (Lanczos)")
    p.add_argument("--density", action="store_true", help="spectral density by SLQ")
    p.add_argument("--trace", action="store_true", help="trace by Hutch++")
    p.add_argument("--blocks", action="store_true",
                   help="also per parameter block: embeddings, each attention, each MLP, each norm")
    p.add_argument("--plain-lanczos", action="store_true",
                   help="Lanczos without a basis (no reorthogonalization, Cullum-Willoughby filter; the default "
                        "only when the bases would not fit in memory)")
    p.add_argument("--operator", choices=OPERATORS, default="hessian",
                   help="hessian, ggn (Gauss-Newton, closed-form softmax), fisher (empirical) or fisher-mc "
                        "(Monte-Carlo labels)")
    p.add_argument("--out", help="output folder (default: a new RUN_DIR/hessian-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.add_argument("--batch-size", type=argtypes.SIZE, help="sequences of the eval set's first batch to use "
                   "(default: 8, the default analysis batch every curvature command shares)")
    p.add_argument("--num-steps", type=argtypes.SIZE, default=80, help="Lanczos steps (eigenvalues, SLQ)")
    p.add_argument("--num-probes", type=argtypes.SIZE, default=4, help="SLQ probes")
    p.add_argument("--num-matvecs", type=argtypes.SIZE, default=60, help="matvecs for the trace")
    p.add_argument("--seed", type=argtypes.SEED, default=0, help="key of the random probes")
    p.add_argument("--seed-index", type=argtypes.count(0, 1_000_000), default=0,
                   help="a run of several seeds (train.num_seeds): which one, 0-based")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import analysis, rundir
    from sandbox.analysis import curvature, figures
    from sandbox.analysis.progress import reporter
    from sandbox.analysis.run import ANALYSIS_BATCH_SIZE
    from sandbox.curvature import Layout
    from sandbox.errors import SandboxError
    from sandbox.train import memory, records

    if args.top_k > args.num_steps:
        raise SandboxError(f"--top-k {args.top_k} exceeds --num-steps {args.num_steps}: Lanczos finds at most as "
                           "many eigenvalues as its steps; raise --num-steps or lower --top-k")
    opts = curvature.CurvatureOptions(args.operator, args.top_k, args.num_steps, args.density, args.num_probes,
                                      args.trace, args.num_matvecs, args.blocks, args.seed,
                                      args.plain_lanczos)
    run = analysis.load(args.run_dir, args.step, args.seed_index)
    if run.cfg.train.num_seeds > 1:  # never silently one of several
        print(f"the run trained {run.cfg.train.num_seeds} seeds at once; this is seed index {args.seed_index} "
              f"(train.seed {run.cfg.train.seed + args.seed_index}); --seed-index picks another")
    curvature.check_request(Layout.of(run.params).dim, opts)
    batch = args.batch_size or min(ANALYSIS_BATCH_SIZE, run.cfg.train.batch_size)
    memory.check_activations(run.cfg, batch, 3, "--batch-size")  # refused before --out is made
    out = Path(args.out) if args.out else rundir.new_child(Path(args.run_dir), "hessian")
    with rundir.claim(out, "hessian", args.force, inputs=[args.run_dir]), \
            reporter(curvature.stages(opts, run.groups(), run.params), f"{args.operator} spectra") as tick:
        result = curvature.of_run(run, opts, args.batch_size, tick)
        result["figures"] = figures.curvature(result, out)
        records.write_json(out / "hessian.json", result)
    if result.get("method") == curvature.PLAIN:
        print(f"the Lanczos bases would not fit in memory: plain Lanczos (no reorthogonalization, Cullum-Willoughby "
              f"filter), {result.get('trace_method', 'no')} trace")
    for line in summary_lines(result, args.operator, run.step):
        print(line)
    print(f"wrote {out / 'hessian.json'} and {', '.join(result['figures'])}")
    return 0


def summary_lines(result: dict, operator: str, step: int) -> list[str]:
    """What `hessian` prints: every eigenvalue asked for, each number named; per block, its method."""
    top, res = result["top_eigenvalues"], result.get("residuals")
    lines = [f"{operator} at step {step} on eval set {result['eval_set']}, dimension {result['dim']:,}:",
             f"  top {len(top)} eigenvalues (Lanczos, largest first): " + ", ".join(f"{v:.4g}" for v in top)]
    if res:
        lines.append(f"  their Lanczos residuals ||A v - lambda v||: at most {max(res):.2g}")
    if "trace" in result:
        lines.append(f"  trace ({result.get('trace_method', 'Hutch++')} estimate): {result['trace']:.4g}")
    for name, block in result.get("blocks", {}).items():
        how = ("exact, from the dense block (residuals 0)" if block["method"] == "dense"
               else f"Lanczos, residual at most {max(block['residuals']):.2g}")
        shown = f"top {len(block['top_eigenvalues'])}" + (f" (all {block['dim']}: the block's dimension)"
                                                           if len(block["top_eigenvalues"]) == block["dim"] else "")
        lines.append(f"  block {name} ({block['dim']:,} parameters): largest eigenvalue "
                     f"{block['top_eigenvalues'][0]:.4g} of the {shown}; {how}")
    return lines
