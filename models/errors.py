"""The exception tree. One root; subclasses grouped by what the caller does about them.

- ``ConfigError``: bad settings, rule or quota file -> exit 2, fix the file.
- ``FatalError``: stop this piece of work, keep state as it was, report.
- ``RetriableError``: try again later (with back-off); nothing was committed.
- ``SkippableError``: this one item is bad; set it aside (quarantine) and go on.

Every error carries the fields a reader needs to find the problem and a message that
says how to fix it. Messages never contain secret values.
"""

from __future__ import annotations


class SalespulseError(Exception):
    """Root of every error salespulse raises on purpose."""

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def __str__(self) -> str:
        if not self.fields:
            return self.message
        where = ", ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.message} ({where})"


class ConfigError(SalespulseError):
    """A settings, rule or quota file (or variable) is wrong; the user must edit it."""

    def __init__(self, message: str, *, source: str, key: str | None = None, line: int | None = None) -> None:
        super().__init__(message, source=source, key=key, line=line)
        self.source = source
        self.key = key
        self.line = line

    def __str__(self) -> str:
        place = self.source
        if self.line is not None:
            place += f":{self.line}"
        if self.key:
            place += f": {self.key}"
        return f"{place}: {self.message}"


class FatalError(SalespulseError):
    """The work cannot go on; state stays where it was."""


class RetriableError(SalespulseError):
    """A transient failure; the same work may succeed later."""


class SkippableError(SalespulseError):
    """One item is bad; the rest of the work goes on."""


class RuleFileError(ConfigError):
    """One or more rule files (or rule-test files) are wrong; ``problems`` lists every one.

    Each problem reads ``file:line:column: rule 'id': what is wrong, what was expected``, so an
    admin fixes them all in one pass instead of one per run.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in rule files", source="rule files")
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)
