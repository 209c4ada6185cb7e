"""Several worker processes of one command on this machine, each with its share of the CPU threads.

``nas search --jobs N`` starts N copies of itself that share the study through its storage (how
workers share trials is in :mod:`nas.search`), waits for them, then finishes what is left and
prints the summary. The workers run in their own process group: a Ctrl-C reaches the coordinator
alone, which passes exactly one on to each worker (a second Ctrl-C passes a second: abort now).
The workers' arguments come from :func:`nas.search.worker_args`.
"""
from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from .workers import STOPPING


def cores() -> int:
    """CPU cores this process may run on (a container's or ``taskset``'s limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(device_type: str) -> int:
    """Workers when ``--jobs`` is not given.

    On a CPU, two single-threaded workers beat one worker with both threads on the 2-core AMD EPYC
    measured (2026-11-26): 1,663 against 1,245 training images a second (``bench/cpu_options.py``)
    and 482 against 312 candidates an hour (``bench/search_throughput.py``, both with halving):
    small convolutions do not split well across threads.
    On a GPU one worker, until a measurement (``bench/gpu_check.sh``) says otherwise.
    """
    return 1 if device_type != "cpu" else max(1, min(2, cores()))


def threads(jobs: int) -> int:
    return max(1, cores() // jobs)


class Display:
    """The coordinator's terminal while workers run: every line a worker prints, whole, and under
    them a status block (a line per worker from ``status``) redrawn in place every ``every`` seconds.

    Workers print to pipes that only this process reads, so no bar or status line can split a line.
    Off a terminal there is no display at all: the workers print plain lines straight to the log.
    """

    def __init__(self, status: Callable[[list[int]], list[str]], every: float = 2.0):
        self.status, self.every = status, every
        self.pending: collections.deque = collections.deque()  # (stream, line): appends are thread-safe
        self.rows: list[str] = []
        self.drawn, self.last = 0, -every

    def read(self, pipe, to) -> threading.Thread:
        def pump():
            for line in iter(pipe.readline, ""):
                self.pending.append((to, line))
            pipe.close()
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        return reader

    def say(self, line: str) -> None:
        self.pending.append((sys.stdout, line + "\n"))

    def tick(self, pids: list[int], final: bool = False) -> None:
        now = time.monotonic()
        if not (self.pending or final or now - self.last >= self.every):
            return
        if now - self.last >= self.every and not final:
            try:
                self.rows = self.status(pids)
            except Exception:  # the database busy for a moment: keep the last block, try again next tick
                pass
            self.last = now
        if self.drawn:  # erase the block line by line, from its last up to its first; erasing "to the end of
            # the screen" from the top-left corner makes tmux keep the old block in its scrollback
            sys.stdout.write("\x1b[F\x1b[2K" * self.drawn)
            sys.stdout.flush()
            self.drawn = 0
        while self.pending:
            to, line = self.pending.popleft()
            to.write(line)
            to.flush()
        if not final:
            width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped row would break the redraw
            for row in self.rows:
                sys.stdout.write(row[:width] + "\n")
            self.drawn = len(self.rows)
        sys.stdout.flush()


def run_workers(args: list[str], jobs: int, env: dict[str, str] | None = None, signals: bool = True,
                status: Callable[[list[int]], list[str]] | None = None) -> list[int]:
    """Run ``nas ARGS`` in ``jobs`` processes, each with its share of the threads; their exit codes.
    ``env``: more environment for them (secrets go there, not in ``args``, which ``ps`` shows).
    ``signals``: pass Ctrl-C and SIGTERM on to them through handlers of this process (a command);
    otherwise (from Python) a ``KeyboardInterrupt`` here is passed on as a Ctrl-C to each.
    ``status``: the status block's lines for the workers' pids, shown under their lines (a
    :class:`Display`) when standard output is a terminal."""
    env = {**{k: v for k, v in os.environ.items() if k != "NAS_JOBS"}, "OMP_NUM_THREADS": str(threads(jobs)),
           **(env or {})}
    display = Display(status) if status is not None and sys.stdout.isatty() else None
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1) if display else {}
    if display:
        env["PYTHONUNBUFFERED"] = "1"  # a line reaches the display when it is printed
    procs = [subprocess.Popen([sys.executable, "-m", "nas", *args], env=env, start_new_session=True,
                              preexec_fn=_die_with(os.getpid()), **pipes)
             for _ in range(jobs)]
    readers = [display.read(pipe, to) for p in procs for pipe, to in ((p.stdout, sys.stdout), (p.stderr, sys.stderr))
               ] if display else []
    pids = [p.pid for p in procs]

    said = [False]

    def forward(signum, frame=None):
        if not said[0]:  # the workers stay quiet: one message, not one per worker
            if display:
                display.say(STOPPING)
            else:
                print(STOPPING, flush=True)
            said[0] = True
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signum)
                except ProcessLookupError:  # it ended just now
                    pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} if signals else {}
    try:
        while True:
            try:
                if display is None:
                    return [p.wait() for p in procs]
                while any(p.poll() is None for p in procs):
                    display.tick(pids)
                    time.sleep(0.2)
                for reader in readers:
                    reader.join()
                display.tick(pids, final=True)
                return [p.wait() for p in procs]
            except KeyboardInterrupt:  # only without handlers: each worker stops after its epoch
                forward(signal.SIGINT)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _die_with(parent: int):
    """A worker's first act: be killed when the coordinator dies, however it dies (SIGKILL, or the
    terminal closing). Its running trial is then retried, as a killed worker's always is
    (:mod:`nas.study`), and nobody is left training without a coordinator to sum up or confirm."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the coordinator died before the line above took effect
            os._exit(1)
    return arm
