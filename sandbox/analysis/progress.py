"""Progress of long analyses: a rich bar in a terminal, plain flushed lines otherwise (logs, pipes)."""

import sys
from contextlib import contextmanager


@contextmanager
def reporter(total: int, title: str, stream=None):
    """Yield `tick(target, stage)`, to call after each of `total` units of work."""
    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(file=stream), transient=True) as bar:
            task = bar.add_task(title, total=total)
            yield lambda target, stage: bar.update(task, advance=1, description=f"{title}: {target} {stage}")
        return
    done = [0]

    def tick(target, stage):
        done[0] += 1
        print(f"{title} [{done[0]}/{total}] {target}: {stage} done", file=stream, flush=True)

    yield tick
