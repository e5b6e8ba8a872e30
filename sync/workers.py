"""Running a stream in a forked worker process, so several streams sync at once.

Why processes: a sync is CPU-bound in Python (JSON, validation, building rows) and a
process uses one core whatever its threads do; two streams in two processes use two.
Why fork: the child inherits the imported modules, the connector and its streams, so
there is no second login or describe. The parent empties the connector's HTTP pools
before each fork, so no socket is ever shared, and the child opens its own database
connections.

A worker dies with its parent (``PR_SET_PDEATHSIG``): a SIGKILLed sync leaves no orphan
writing behind the next run's back. That is Linux-only. And a process that runs other
threads must not fork (a lock another thread holds stays locked forever in the child:
seen as a worker hung inside psycopg's connect), so a threaded host, such as a test
process running the sandbox servers, syncs its streams one after another.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from sync.progress import StreamProgress

PR_SET_PDEATHSIG = 1
log = logging.getLogger("salespulse.sync")


def available() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1


class _Forward:
    """The child's progress: counts go to the parent, which owns the terminal."""

    def __init__(self, events: Any, slot: int) -> None:
        self.events = events
        self.slot = slot

    def advance(self, records: int) -> None:
        self.events.put(("progress", self.slot, records))

    def finish(self, summary: str) -> None:
        """The parent finishes the bar when the result arrives."""


@dataclass
class Worker:
    slot: int
    process: BaseProcess
    progress: StreamProgress
    result: Any = None


class WorkerPool:
    """At most ``size`` workers; each runs one ``work(progress)`` and sends back its result."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.context = multiprocessing.get_context("fork")
        self.events = self.context.Queue()
        self.running: dict[int, Worker] = {}

    @property
    def full(self) -> bool:
        return len(self.running) >= self.size

    def start(self, slot: int, work: Callable[[StreamProgress], Any], progress: StreamProgress) -> None:
        parent = os.getpid()
        events = self.events

        def main() -> None:
            _die_with(parent)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
            try:
                events.put(("done", slot, work(_Forward(events, slot))))
            except Exception:
                # Through the log's secret filter: multiprocessing would print the traceback raw.
                log.exception("stream worker %s failed", slot)
                sys.exit(1)

        process = self.context.Process(target=main, name=f"salespulse-sync-{slot}", daemon=True)
        # Objects that exist now are never collected in the child: the collector then leaves
        # the inherited pages alone instead of copying them (less memory per worker).
        gc.freeze()
        process.start()
        self.running[slot] = Worker(slot, process, progress)

    def next_finished(self) -> Worker:
        """Block until a worker ends; its ``result`` is None if it died without one."""
        while True:
            try:
                kind, slot, value = self.events.get(timeout=0.5)
            except queue.Empty:
                for worker in self.running.values():
                    if worker.process.exitcode is not None and not self._pending():
                        return self._end(worker)
                continue
            worker = self.running[slot]
            if kind == "progress":
                worker.progress.advance(value)
            else:
                worker.result = value
                worker.process.join()
                return self._end(worker)

    def _pending(self) -> bool:
        return not self.events.empty()

    def _end(self, worker: Worker) -> Worker:
        del self.running[worker.slot]
        return worker

    def stop(self) -> None:
        """Terminate what still runs (the parent is leaving); their open transactions roll back."""
        for worker in self.running.values():
            worker.process.terminate()
        for worker in self.running.values():
            worker.process.join(timeout=30)
        self.running.clear()
        self.events.close()


def _die_with(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
