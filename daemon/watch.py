"""Hot reload: files the daemon re-reads when they change, keeping the last good version.

Polling (a content hash every ``reload_poll_s``) rather than inotify: it works on every
file system, including network mounts and files replaced by a config-management tool
through a rename, and a few small files cost nothing to hash. A change is applied only
if it loads completely; a file with a problem is refused as a whole, its problems
(``file:line: what``) are logged and kept for ``status``, and the daemon goes on with the
last good version. The same broken content is not re-tried every poll, only a new edit.
"""

from __future__ import annotations

import glob
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from models.errors import ConfigError

log = logging.getLogger("salespulse.daemon")

_GLOB = set("*?[")


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files named by ``paths``: a file, every file in a folder, or a glob's matches."""
    found: list[Path] = []
    for path in paths:
        if _GLOB.intersection(str(path)):
            found += sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            found.append(path)
    return found


def fingerprint(paths: Sequence[Path]) -> str:
    """A hash of the names and contents of the files (a missing file counts as a state too)."""
    digest = hashlib.sha256()
    for path in expand(paths):
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as exc:
            digest.update(f"unreadable: {exc.strerror}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def problems_of(exc: ConfigError) -> list[str]:
    """Every problem a refused file has (rule and quota files list them all; others have one)."""
    listed = getattr(exc, "problems", None)
    if listed:
        return [p if isinstance(p, str) else _line_problem(exc, p) for p in listed]
    return [str(exc)]


def _line_problem(exc: ConfigError, problem: Any) -> str:
    if isinstance(problem, tuple) and len(problem) == 2:
        return f"{exc.source}:{problem[0]}: {problem[1]}"
    return str(problem)


@dataclass(frozen=True)
class Refusal:
    at: datetime
    problems: tuple[str, ...]


@dataclass
class Watched:
    """One group of files (the rule files, the quota file, the channel map) and how to apply a change.

    ``apply`` loads the files and puts them in use, returning a one-line summary; it raises
    ConfigError (with every problem) to refuse them, and then changes nothing.
    """

    name: str
    paths: Sequence[Path]
    apply: Callable[[], str]
    fingerprint: str | None = None
    loaded_at: datetime | None = None
    summary: str | None = None
    refused: Refusal | None = None
    history: list[str] = field(default_factory=list)

    def poll(self, now: datetime, *, force: bool = False) -> bool:
        """Apply the files if they changed (or ``force``); True when a new version was put in use."""
        current = fingerprint(self.paths)
        if current == self.fingerprint and not force:
            return False
        self.fingerprint = current
        try:
            summary = self.apply()
        except ConfigError as exc:
            self._refuse(Refusal(now, tuple(problems_of(exc))))
            return False
        first = self.loaded_at is None
        self.loaded_at, self.summary, self.refused = now, summary, None
        log.info(
            "%s %s: %s",
            self.name,
            "loaded" if first else "reloaded",
            summary,
            extra={"fields": {"event": "loaded" if first else "reloaded", "files": self.name}},
        )
        return True

    def _refuse(self, refusal: Refusal) -> None:
        self.refused = refusal
        kept = f"kept the version loaded at {self.loaded_at:%Y-%m-%d %H:%M:%S}Z" if self.loaded_at else "none loaded"
        for problem in refusal.problems:
            log.error(
                "%s change refused: %s",
                self.name,
                problem,
                extra={"fields": {"event": "reload_refused", "files": self.name, "kept": kept}},
            )

    def state(self) -> dict[str, Any]:
        """For ``status``: what is in use, and the refused change if the newest edit was refused."""
        return {
            "paths": [str(p) for p in self.paths],
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "summary": self.summary,
            "refused_at": self.refused.at.isoformat() if self.refused else None,
            "problems": list(self.refused.problems) if self.refused else [],
        }
