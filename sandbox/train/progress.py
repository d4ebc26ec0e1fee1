"""How training reports as it goes: a rich bar in a terminal, plain flushed lines otherwise.

Under nohup, Slurm, CI or `| tee` a bar shows nothing until the end, so there each report is one
line (step, train loss, val loss when evaluated, tokens/s, ETA), flushed at once.
"""

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Reporter:
    """`with Reporter(total, start, enabled) as r: r.update(step, row)`; nothing at all if not enabled."""

    def __init__(self, total: int, start: int, enabled: bool = True, stream=None):
        self.total, self.start, self.enabled = total, start, enabled
        self.stream = stream or sys.stdout
        self.bar = None
        if enabled and self.stream.isatty():
            columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       TextColumn("{task.fields[info]}")]
            self.bar = Progress(*columns)

    def __enter__(self):
        self.begin()
        if self.bar is not None:
            self.bar.__enter__()
            self.task = self.bar.add_task("train", total=self.total, completed=self.start, info="")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def begin(self) -> None:
        """The steps start now (after compiling): the ETA counts from here."""
        self.t0 = time.perf_counter()

    def say(self, line: str) -> None:
        """A one-off message (resuming, stopping), shown whatever the stream is."""
        if self.enabled:
            print(line, file=self.stream, flush=True)

    def update(self, step: int, row: dict, plain: bool = True) -> None:
        """Report `row` (train_loss, tokens_per_second, maybe val_loss) of `step`; `plain`: also as a line."""
        if not self.enabled:
            return
        val = f"  val loss {row['val_loss']:.4f}" if "val_loss" in row else ""
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=f"loss {row['train_loss']:.3f}{val}")
        elif plain:
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / max(step - self.start, 1) * (self.total - step)
            print(f"step {step}/{self.total}  train loss {row['train_loss']:.4f}{val}  "
                  f"{row['tokens_per_second']:.0f} tokens/s  ETA {_duration(eta)}", file=self.stream, flush=True)
