"""Logging for a daemon that runs for months: plain ``key=value`` lines, secrets masked.

Masking is the last line of defence: code should never log a secret in the first place,
but an SDK's exception text can echo a token, so every record passes through a filter
that replaces each known secret value (also as ``repr`` escapes it) and the password
of any URL with ``***``.

The daemon logs one JSON object per line when stderr is not a terminal (journald, a log
shipper: no parsing rules to maintain) and short readable lines on a terminal. Structured
values travel in ``extra={"fields": {...}}`` and become JSON keys or ``key=value`` pairs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
# 'scheme://user:password@host': the password runs to the last '@' of the word, so a
# malformed password that holds an '@' is masked whole.
_URL_PASSWORD = re.compile(r"(//[^\s:/@]*:)\S*@")


def mask_url_passwords(text: str) -> str:
    """Every 'scheme://user:password@' in the text with the password masked."""
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)


def mask_userinfo(url: str) -> str:
    """A URL-like setting with everything before its host masked, well-formed or not
    ('u:pw@host/db' has no scheme for the pattern above to anchor on)."""
    scheme, sep, rest = url.rpartition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}{MASK}@{rest.rpartition('@')[2]}"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Each secret also as repr() escapes it (a token with a newline shows as 'tok\\n' in an
        # SDK's message); longest first, so a secret that contains another is masked whole.
        forms = {form for s in secrets if s and len(s) >= 4 for form in (s, repr(s)[1:-1])}
        self.secrets = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return mask_url_passwords(text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            record.fields = {k: self.redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: ARG002
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _pair(key: str, value: Any) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return f"{key}={text!r}" if not text or any(c.isspace() or c in "='\"" for c in text) else f"{key}={text}"


class KeyValueFormatter(_UTCFormatter):
    """``key=value`` lines (the commands' format), with the record's fields appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(_pair(k, v) for k, v in _fields(record).items())
        return f"{line} {pairs}" if pairs else line


class ReadableFormatter(KeyValueFormatter):
    """For a person at a terminal: time, level, message, fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: ARG002
        return time.strftime("%H:%M:%S", self.converter(record.created))


class JsonFormatter(_UTCFormatter):
    """One JSON object per line: ts, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            data.setdefault(key, value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(level: str, secrets: Iterable[str] = (), *, style: str = "keyvalue") -> RedactSecrets:
    """Log to stderr in ``style``: ``keyvalue`` (commands), ``json`` or ``readable`` (the daemon)."""
    handler = logging.StreamHandler(sys.stderr)
    formatters = {
        "keyvalue": lambda: KeyValueFormatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"),
        "json": lambda: JsonFormatter(),
        "readable": ReadableFormatter,
    }
    handler.setFormatter(formatters[style]())
    redactor = RedactSecrets(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The SDKs log request details (headers, URLs with tokens) at DEBUG: keep them at WARNING.
    for noisy in ("urllib3", "simple_salesforce", "slack_sdk", "hubspot", "alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return redactor
