"""Several worker processes of one command on this machine, each with its share of the CPU threads.

``nas search --jobs N`` starts N copies of itself that share the study through its storage (how
workers share trials is in :mod:`nas.search`), waits for them, then finishes what is left and
prints the summary. The workers run in their own process group: a Ctrl-C reaches the coordinator
alone, which passes exactly one on to each worker (a second Ctrl-C passes a second: abort now).
The workers' arguments come from :func:`nas.search.worker_args`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

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


def run_workers(args: list[str], jobs: int, env: dict[str, str] | None = None, signals: bool = True) -> list[int]:
    """Run ``nas ARGS`` in ``jobs`` processes, each with its share of the threads; their exit codes.
    ``env``: more environment for them (secrets go there, not in ``args``, which ``ps`` shows).
    ``signals``: pass Ctrl-C and SIGTERM on to them through handlers of this process (a command);
    otherwise (from Python) a ``KeyboardInterrupt`` here is passed on as a Ctrl-C to each."""
    env = {**{k: v for k, v in os.environ.items() if k != "NAS_JOBS"}, "OMP_NUM_THREADS": str(threads(jobs)),
           **(env or {})}
    procs = [subprocess.Popen([sys.executable, "-m", "nas", *args], env=env, start_new_session=True,
                              preexec_fn=_die_with(os.getpid()))
             for _ in range(jobs)]

    said = [False]

    def forward(signum, frame=None):
        if not said[0]:  # the workers stay quiet: one message, not one per worker
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
