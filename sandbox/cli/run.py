"""`sandbox run NAME [KEY=VALUE ...] [--out DIR] [--quick]`: run a research experiment by name."""

import time
from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("run", help="run a research experiment (sandbox list experiments)")
    p.add_argument("name", help="experiment name, e.g. quickstart")
    p.add_argument("overrides", nargs="*", help="dotted overrides KEY=VALUE")
    p.add_argument("--out", help="output folder (default: runs/<name>-<timestamp>)")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is a folder the sandbox made (never any other folder)")
    p.add_argument("--quick", action="store_true", help="the quick variant (well under a minute)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import rundir
    from sandbox.experiments import registry

    registry.load_config(args.name, args.overrides, args.quick)  # bad input fails before any file is made
    out = Path(args.out) if args.out else Path("runs") / f"{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with rundir.claim(out, f"run {args.name}", args.force):
        summary = registry.run(args.name, out, args.overrides, args.quick, progress=not args.no_progress)
    verdict = summary.get("verdict")
    if verdict is not None:
        print(f"{args.name}: verdict {verdict}")
    print(f"results: {out}")
    return 0
