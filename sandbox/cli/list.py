"""`sandbox list optimizers|experiments`: what a config can name."""

import re

# reprs that carry a memory address (`<function f at 0x7f..>`, `<X object at 0x7f..>`) -> a plain name
_ADDRESS = re.compile(r"<(?:built-in )?(?:function|method|bound method) ([\w.<>]+)[^>]*>"
                      r"|<([\w.]+) object at 0x[0-9a-f]+>")


def _plain(text: str) -> str:
    return _ADDRESS.sub(lambda m: m.group(1) or f"{m.group(2)}()", text)

WHATS = ("optimizers", "experiments")


def add_parser(subparsers):
    p = subparsers.add_parser("list", help="list the registered optimizers or experiments")
    p.add_argument("what", choices=WHATS, help="what to list")
    p.set_defaults(func=run)


def _table(title, columns, rows):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def run(args) -> int:
    if args.what == "optimizers":
        from sandbox import optim

        rows = [tuple(_plain(str(x)) for x in row) for row in optim.describe()]
        _table(f"{len(rows)} optimizers (optimizer.name; optimizer.args takes the arguments)",
               ("name", "arguments", "description"), rows)
        return 0
    from sandbox.experiments import registry

    rows = [tuple(str(x) for x in row) for row in registry.describe()]  # (name, arguments, doc)
    _table(f"{len(rows)} experiments (sandbox run NAME)", ("name", "arguments", "description"), rows)
    return 0
