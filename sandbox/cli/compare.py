"""`sandbox compare RUN RUN [RUN ...] [--out DIR]`: train runs side by side on one HTML page.

Writes OUT/compare.html, losses.png (every run's train and val loss overlaid) and compare.json: each
run's summary, the config keys in which the runs differ, and for runs that differ only in train.seed the
mean ± std of their final val loss. OUT defaults to a new runs/compare-<timestamp>.
"""

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("compare", help="train runs side by side: overlaid losses, summaries, seed spread")
    p.add_argument("run_dirs", nargs="+", metavar="RUN", help="run folders made by `sandbox train` (two or more)")
    p.add_argument("--out", help="output folder (default: a new runs/compare-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import rundir
    from sandbox.analysis import report

    if len(args.run_dirs) < 2:
        from sandbox.errors import SandboxError

        raise SandboxError("give two or more run folders to compare")
    for run_dir in args.run_dirs:
        report.check_run(run_dir)
    out = Path(args.out) if args.out else rundir.new_child(Path("runs"), "compare")
    with rundir.claim(out, "compare", args.force, inputs=args.run_dirs):
        result = report.compare(args.run_dirs, out)
    for row in result["runs"]:
        spread = row["final_val_loss_std_over_seeds"]
        val = "—" if row["final_val_loss"] is None else f"{row['final_val_loss']:.4f}"
        print(f"{row['run']}: final val loss {val}" + (f" ± {spread:.4f} (std over its seeds)" if spread else "")
              + f" after {row['steps']} steps")
    for group in result["seed_groups"]:
        print(f"seeds {', '.join(group['runs'])}: final val loss {group['mean']:.4f} ± {group['std']:.4f} "
              f"(mean ± sample std over {group['n']} runs)")
    if result["differences"]:
        print("they differ in: " + ", ".join(result["differences"]))
    print(f"wrote {out / 'compare.html'}")
    return 0
