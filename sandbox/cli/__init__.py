"""The `sandbox` command: one sub-command per file in this folder (its name in COMMANDS).

Each sub-command module exposes `add_parser(subparsers)` that registers its parser and sets
`func=run` on it; `run(args) -> int` does the work. A `SandboxError` (bad input), an `OSError` (permission, no space,
read-only file system, ...) or a device running out of memory, raised anywhere, is printed as one
line without a traceback and the command exits 2; `--debug` shows the traceback as well. Ctrl-C exits
130 (SIGTERM while training 143), saying how to continue where the command knows. Every command reuses
compiled programs from the persistent compilation cache (`sandbox.compile_cache`; SANDBOX_COMPILE_CACHE=0 turns it off).
"""

import argparse
import importlib
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

from sandbox import compile_cache
from sandbox.errors import SandboxError

COMMANDS = ["train", "launch", "sample", "run", "list", "hessian", "tokenize", "compress", "spectra", "attention",
            "numerics", "bayes", "results", "pretrained", "report", "compare"]

DESCRIPTION = """\
Train small transformer LMs and ask them exact mathematical questions: Hessian spectra, weight
spectra, compression, calibration, attention graphs, floating point. Each command writes a run
folder (or a new folder inside one) with metrics, figures and a JSON summary."""

EXAMPLES = """\
start here:
  sandbox run quickstart                       train, Hessian spectrum, SVD sweep, one HTML report
  sandbox train configs/tiny.yaml --out runs/tiny
  sandbox hessian runs/tiny --top-k 10 --density
  sandbox compare runs/a runs/b                overlaid losses and a summary table
  sandbox list                                 what can be listed (presets, optimizers, experiments)
`sandbox COMMAND --help` gives each command's options and their defaults."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless its help already says it, or there is none to say);
    descriptions and examples keep their line breaks."""

    def _get_help_string(self, action):  # the documented way to change what argparse's defaults formatter adds
        help_text = action.help or ""
        unsaid = action.default is None or action.default is False or action.default in (argparse.SUPPRESS, [])
        if unsaid or "default" in help_text:
            return help_text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with `HelpFormatter`, and a usage error in one line (`error: ...`, exit 2) pointing at --help;
    sub-command parsers (and theirs) are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sandbox", description=DESCRIPTION, epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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


# what sizes each command's request, named in its out-of-memory message
_SIZED_BY = {"train": "train.batch_size, model.seq_len, the model's size or train.num_seeds",
             "sample": "-n or --num-tokens", "hessian": "--batch-size, --num-steps or --num-probes",
             "bayes": "--fit-windows or --val-windows", "compress": "--batch-size or --calib-batches",
             "numerics": "--top-k", "run": "the experiment's overrides (or --quick)"}


def out_of_memory(e: Exception, command: str) -> str | None:
    """One line for XLA's resource errors (its exception type is only importable with jax loaded)."""
    text = str(e)
    if type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError") and ("RESOURCE_EXHAUSTED" in text
                                                                       or "Out of memory" in text):
        first = next((line for line in text.splitlines() if line.strip()), text)
        lower = _SIZED_BY.get(command, "the size of the request")
        return f"the device ran out of memory ({first[:200]}); lower {lower}"
    return None


def _leave_if_joined(code: int) -> int:
    """`code`; in one of several joined processes, exit with it at once (`distributed.leave`)."""
    if "jax" in sys.modules:
        from sandbox.train import distributed

        if distributed.joined():
            distributed.leave(code)
    return code


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # argparse itself exits 2 on bad usage
    # KEY=VALUE overrides may also come after the options (`sandbox run NAME --quick a.b=1`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        compile_cache.enable()
        return int(args.func(args) or 0)
    except (SandboxError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e if isinstance(e, SandboxError) else _describe(e)}", file=sys.stderr)
        return _leave_if_joined(2)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return _leave_if_joined(getattr(e, "exit_code", 130))  # 128 + the signal: 130 SIGINT, 143 SIGTERM
    except Exception as e:
        message = out_of_memory(e, args.command)
        if message is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
