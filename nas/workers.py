"""What a worker process needs to stop well: Ctrl-C and SIGTERM handling, and its name in the study."""
from __future__ import annotations

import os
import signal
import socket

STOPPING = "\nstopping after this epoch; everything is kept (Ctrl-C again to abort now)"


class Stop:
    """First Ctrl-C (or SIGTERM): finish the current epoch, keep everything, stop. Second: abort now.

    Only a command takes over the signals (``signals=True``). Called from Python (a notebook), the
    caller's own interrupt stays: a ``KeyboardInterrupt`` reaches the trainer, whose trial or run is
    queued again.
    """

    def __init__(self, signals: bool = False, quiet: bool = False):
        self.requested = False
        self.signals, self.quiet = signals, quiet  # quiet: a --jobs worker, whose coordinator says it once
        self._previous = None
        self._previous_term = None

    def __enter__(self):
        if not self.signals:
            return self
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._previous_term = signal.signal(signal.SIGTERM, self._handle)  # kill, a scheduler's preemption
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if not self.quiet:
            print(STOPPING, flush=True)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            signal.signal(signal.SIGTERM, self._previous_term)
        return False


class Interrupted(Exception):
    """A trial or run left unfinished by a stop request; it has been queued again."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
