"""`sandbox results RUN [RUN ...]`: one table of the verdicts of experiment result folders (each rule is in its
summary.json, `expected.rule`)."""

from pathlib import Path

COLUMNS = ("folder", "experiment", "seeds", "per seed", "verdict", "why not reproduced")


def add_parser(subparsers):
    p = subparsers.add_parser("results", help="one table of experiment folders' verdicts (sandbox run NAME --out DIR)")
    p.add_argument("runs", nargs="+", help="experiment result folders (each with its summary.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from sandbox.experiments import protocol

    rows = [protocol.row(Path(folder), protocol.read(Path(folder))) for folder in args.runs]  # all read, then print
    table = Table(title=f"{len(rows)} experiment result folders")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)
    return 0
