"""The `sandbox` command: one sub-command per file in this folder.

Each sub-command module exposes `add_parser(subparsers)` that registers its parser and sets
`func=run` on it; `run(args) -> int` does the work. A `SandboxError` (bad input) or an `OSError`
(permission, no space, read-only file system, ...) raised anywhere is printed as one line without a
traceback and the command exits 2; `--debug` shows the traceback as well.
"""

import argparse
import importlib
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

from sandbox.errors import SandboxError

COMMANDS = ["train", "sample", "run", "list", "hessian", "tokenize", "compress", "spectra", "bayes"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"sandbox.cli.{name}").add_parser(subparsers)
    return parser


def _version() -> str:
    try:
        return version("llm-math-sandbox")
    except PackageNotFoundError:
        return "(not installed)"


def _describe(e: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to check."""
    where = f" {e.filename}" if e.filename else ""
    return f"{e.strerror or e}:{where} (check the path, its permissions and the free disk space)"


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # argparse itself exits 2 on bad usage
    # KEY=VALUE overrides may also come after the options (`sandbox run NAME --quick a.b=1`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except (SandboxError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e if isinstance(e, SandboxError) else _describe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
