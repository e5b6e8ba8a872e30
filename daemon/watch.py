"""Hot reload: files the daemon re-reads when they change, keeping the last good version.

Polling (a content hash every ``reload_poll_s``) rather than inotify: it works on every
file system, including network mounts and files replaced by a config-management tool
through a rename, and a few small files cost nothing to hash. A change is applied only
if it loads completely; a file with a problem is refused as a whole, its problems
(``file:line: what``) are logged and kept for ``status``, and the daemon goes on with the
last good version. The same broken content is not re-tried every poll, only a new edit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from models.errors import ConfigError

log = logging.getLogger("salespulse.daemon")


def fingerprint(paths: Sequence[Path]) -> str:
    """A hash of the names and contents of the files (a missing file, a folder's listing count too)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path).encode() + b"\0")
        try:
            if path.is_dir():
                digest.update("\0".join(sorted(p.name for p in path.iterdir())).encode())
            else:
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
    files: Callable[[], Sequence[Path]]  # asked at every poll: a folder may gain or lose files
    apply: Callable[[], str]
    fingerprint: str | None = None
    loaded_at: datetime | None = None
    summary: str | None = None
    refused: Refusal | None = None
    history: list[str] = field(default_factory=list)

    def poll(self, now: datetime, *, force: bool = False) -> bool:
        """Apply the files if they changed (or ``force``); True when a new version was put in use."""
        current = fingerprint(self.files())
        if current == self.fingerprint and not force:
            return False
        previous, self.fingerprint = self.fingerprint, current
        try:
            summary = self.apply()
        except ConfigError as exc:
            self._refuse(Refusal(now, tuple(problems_of(exc))))
            return False
        except Exception:
            self.fingerprint = previous  # not the files' fault (the database is down...): look again next time
            raise
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
            "files": [str(p) for p in self.files()],
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "summary": self.summary,
            "refused_at": self.refused.at.isoformat() if self.refused else None,
            "problems": list(self.refused.problems) if self.refused else [],
        }
