"""`sandbox list [configs|optimizers|experiments]`: what a config or a command can name; alone, what can be listed."""

import re

# reprs that carry a memory address (`<function f at 0x7f..>`, `<X object at 0x7f..>`) -> a plain name
_ADDRESS = re.compile(r"<(?:built-in )?(?:function|method|bound method) ([\w.<>]+)[^>]*>"
                      r"|<([\w.]+) object at 0x[0-9a-f]+>")


def _plain(text: str) -> str:
    return _ADDRESS.sub(lambda m: m.group(1) or f"{m.group(2)}()", text)

# what can be listed, and what each list is for
WHATS = {"configs": "YAML presets: run configs (sandbox train), model=NAME, optimizer=NAME, experiments",
         "optimizers": "optimizer.name values and their arguments",
         "experiments": "reproductions that `sandbox run NAME` runs"}


def add_parser(subparsers):
    p = subparsers.add_parser("list", help="list presets, optimizers or experiments (alone: what can be listed)")
    p.add_argument("what", nargs="?", choices=tuple(WHATS), help="what to list (leave out to see the choices)")
    p.set_defaults(func=run)


def _first_comment(path) -> str:
    """A preset's description: the first comment line of its YAML file."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def preset_rows() -> list[tuple[str, str]]:
    """(how to name it, description) for every shipped YAML preset."""
    from sandbox.config import CONFIG_DIR

    rows = []
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        rel = path.relative_to(CONFIG_DIR)
        group = rel.parts[0] if len(rel.parts) > 1 else None
        if group == "experiments":
            quick = path.stem.endswith(".quick")
            name = f"sandbox run {path.stem.removesuffix('.quick')}" + (" --quick" if quick else "")
        elif group:
            name = f"{group}={path.stem}"
        else:
            name = f"sandbox train configs/{rel}"
        rows.append((name, _first_comment(path)))
    return rows


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
    if args.what is None:
        _table("what `sandbox list WHAT` lists", ("WHAT", "what it is"), list(WHATS.items()))
        return 0
    if args.what == "configs":
        rows = preset_rows()  # one line each, never wrapped: meant for grep as much as for reading
        print(f"{len(rows)} presets, shipped in the sandbox's configs/ (usable from any folder):")
        width = max(len(name) for name, _ in rows)
        for name, about in rows:
            print(f"  {name:<{width}}  {about}")
        return 0
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
