"""Progress of a sync: a bar per stream on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol

log = logging.getLogger("salespulse.sync")


class Progress(Protocol):
    def start(self, source: str, stream: str) -> None: ...
    def advance(self, records: int) -> None: ...
    def finish(self, summary: str) -> None: ...


class LogProgress:
    """One structured line per stream start, and every ``every_s`` seconds while it runs."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._label = ""
        self._count = 0
        self._t0 = self._last = 0.0

    def start(self, source: str, stream: str) -> None:
        self._label = f"source={source} stream={stream}"
        self._count = 0
        self._t0 = self._last = time.monotonic()
        log.info("%s event=start", self._label)

    def advance(self, records: int) -> None:
        self._count += records
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            rate = self._count / max(now - self._t0, 1e-9)
            log.info("%s event=progress records=%d rate=%.0f/s", self._label, self._count, rate)

    def finish(self, summary: str) -> None:
        """The engine logs the stream's outcome itself."""


class BarProgress:
    """A rich progress bar per stream (records and rate)."""

    def __init__(self) -> None:
        from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<28}"),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[summary]}"),
            transient=False,
        )
        self._task = None
        self._t0 = 0.0
        self._count = 0

    def start(self, source: str, stream: str) -> None:
        if self._task is None and not self._progress.live.is_started:
            self._progress.start()
        self._t0 = time.monotonic()
        self._count = 0
        self._task = self._progress.add_task(f"{source}/{stream}", total=None, rate="", summary="")

    def advance(self, records: int) -> None:
        self._count += records
        rate = self._count / max(time.monotonic() - self._t0, 1e-9)
        self._progress.update(self._task, advance=records, rate=f"{rate:,.0f}/s")

    def finish(self, summary: str) -> None:
        self._progress.update(self._task, total=self._count, summary=summary)

    def close(self) -> None:
        self._progress.stop()


def progress_for_terminal() -> Progress:
    return BarProgress() if sys.stderr.isatty() else LogProgress()
