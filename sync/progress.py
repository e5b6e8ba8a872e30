"""Progress of a sync: a bar per stream on a terminal, plain log lines otherwise.

Streams may run at the same time (``sync.workers``), so progress is a handle per stream.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol

log = logging.getLogger("salespulse.sync")


class StreamProgress(Protocol):
    def advance(self, records: int) -> None: ...
    def finish(self, summary: str) -> None: ...


class Progress(Protocol):
    def stream(self, source: str, stream: str) -> StreamProgress: ...


class _LogLines:
    def __init__(self, label: str, every_s: float) -> None:
        self.label = label
        self.every_s = every_s
        self.count = 0
        self.t0 = self.last = time.monotonic()
        log.info("%s event=start", label)

    def advance(self, records: int) -> None:
        self.count += records
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.count / max(now - self.t0, 1e-9)
            log.info("%s event=progress records=%d rate=%.0f/s", self.label, self.count, rate)

    def finish(self, summary: str) -> None:
        """The engine logs the stream's outcome itself."""


class LogProgress:
    """One structured line per stream start, and every ``every_s`` seconds while it runs."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s

    def stream(self, source: str, stream: str) -> StreamProgress:
        return _LogLines(f"source={source} stream={stream}", self.every_s)


class _Bar:
    def __init__(self, bars: BarProgress, label: str) -> None:
        self.bars = bars
        self.task = bars.rich.add_task(label, total=None, rate="", summary="")
        self.count = 0
        self.t0 = time.monotonic()

    def advance(self, records: int) -> None:
        self.count += records
        rate = self.count / max(time.monotonic() - self.t0, 1e-9)
        self.bars.rich.update(self.task, advance=records, rate=f"{rate:,.0f}/s", refresh=True)

    def finish(self, summary: str) -> None:
        self.bars.rich.update(self.task, total=self.count, summary=summary, refresh=True)


class BarProgress:
    """A rich progress bar per stream (records and rate)."""

    def __init__(self) -> None:
        from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.rich = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<28}"),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[summary]}"),
            transient=False,
            # No refresh thread: sync workers are forked, and forking a threaded process can deadlock.
            auto_refresh=False,
        )

    def stream(self, source: str, stream: str) -> StreamProgress:
        if not self.rich.live.is_started:
            self.rich.start()
        return _Bar(self, f"{source}/{stream}")

    def close(self) -> None:
        self.rich.stop()


def progress_for_terminal() -> Progress:
    return BarProgress() if sys.stderr.isatty() else LogProgress()
