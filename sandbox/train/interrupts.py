"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM (Slurm's preemption, `kill`) without losing work.

While `deferred()` is active the first of those signals only records a request: the loop finishes
the step group it is in, saves a verified checkpoint there and raises `Interrupted`, whose message
says how to resume (the CLI exits 128 + the signal's number: 130, 143). A second signal aborts at
once, saying so. In a run of several processes every process must stop at the same step, so they
agree on the request at each point where the loop looks (`requested`).
"""

import signal
import sys
import threading
from contextlib import contextmanager

from sandbox.train import distributed

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop by a signal; `exit_code` is 128 + its number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class Aborted(Interrupted):
    """A second signal: the run stopped at once, without saving."""


def stopped(signum: int, step: int, run_dir) -> Interrupted:
    """The stop after a first signal, at `step`, saved there: how to continue."""
    return Interrupted(f"{signal.Signals(signum).name}: stopped after step {step} and saved a verified checkpoint "
                       f"there; continue with `sandbox train --resume {run_dir}`", signum)


class Stop:
    """The request a first signal leaves: `signum` (None: not asked to stop)."""

    def __init__(self):
        self.signum = None

    def handle(self, signum, frame) -> None:
        if self.signum is not None:
            name = signal.Signals(signum).name
            raise Aborted(f"a second signal ({name}) aborted the run at once, without saving", signum)
        self.signum = signum
        print(f"{signal.Signals(signum).name}: finishing the current steps to save a checkpoint "
              "(a second signal aborts at once, without saving)", file=sys.stderr, flush=True)

    def requested(self, step: int) -> int | None:
        """The signal to stop on after `step`, the same in every process (the largest asked for anywhere); None
        to go on."""
        return distributed.agree_max(f"stop/{step}", self.signum or 0) or None


@contextmanager
def deferred():
    """`with deferred() as stop:` SIGINT and SIGTERM set `stop.signum` instead of stopping; a second aborts.

    Outside the main thread (where Python cannot install handlers) signals keep their usual effect.
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop.handle) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def held():
    """Hold back SIGINT and SIGTERM until the block ends (a checkpoint save: orbax's writer threads cannot be
    stopped half-way), then hand each one caught to the handler that was in place (KeyboardInterrupt for
    Python's default SIGINT handler, exit 143 for SIGTERM's default)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for signum in caught:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            raise Interrupted(f"{signal.Signals(signum).name} during a checkpoint save (the save was finished)",
                              signum)
