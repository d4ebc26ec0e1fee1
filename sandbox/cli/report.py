"""`sandbox report RUN [--out DIR]`: one self-contained HTML page for a train run, finished or not.

Writes OUT/report.html (summary table, loss curve, and the provenance: sandbox version, git commit,
machine, the resolved config). OUT defaults to a new RUN/report-<timestamp>.
"""

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("report", help="an HTML report of a train run: losses, summary, config, provenance")
    p.add_argument("run_dir", help="a run folder made by `sandbox train`")
    p.add_argument("--out", help="output folder (default: a new RUN_DIR/report-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import rundir
    from sandbox.analysis import report

    report.check_run(args.run_dir)  # a clear refusal before any folder is made
    out = Path(args.out) if args.out else rundir.new_child(Path(args.run_dir), "report")
    with rundir.claim(out, "report", args.force, inputs=[args.run_dir]):
        page = report.run_report(args.run_dir, out)
    print(f"wrote {page}")
    return 0
