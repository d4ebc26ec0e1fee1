"""The `sandbox` command: one sub-command per file in this folder.

Each sub-command module exposes `add_parser(subparsers)` that registers its parser and sets
`func=run` on it; `run(args) -> int` does the work. A `SandboxError` raised anywhere is printed
as one line without a traceback and the command exits 2.
"""

import argparse
import importlib
import sys

from sandbox.errors import SandboxError

COMMANDS = ["train", "sample", "run", "list", "hessian", "tokenize", "compress", "spectra"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"sandbox.cli.{name}").add_parser(subparsers)
    return parser



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
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
