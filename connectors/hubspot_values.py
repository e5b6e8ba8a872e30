"""HubSpot property values (always strings on the wire) to Python values.

A value that cannot be read is returned unchanged rather than dropped, so the record
model refuses it and the quarantine shows what HubSpot sent ('close_date: ... (got
'not a date')'). HubSpot sends an unset property as null and a cleared one as ''.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_PLAIN_KEY = re.compile(r"[\w.-]{1,24}")


def text(value: Any) -> Any:
    """A property as text, '' (cleared) as None."""
    return None if value is None or value == "" else value


def instant(value: Any) -> Any:
    """ISO-8601 (naive means UTC) or epoch milliseconds to an aware datetime."""
    if not isinstance(value, str):
        return value
    raw = value.strip()
    if not raw:
        return None
    try:
        if raw.isdigit():
            return EPOCH + int(raw) * _ONE_MS
        parsed = datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        return value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day(value: Any) -> Any:
    """The UTC calendar day of a date or datetime property ('2024-06-07T00:00:00Z' -> 2024-06-07)."""
    moment = instant(value)
    return moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment


def flag(value: Any) -> Any:
    """HubSpot booleans are 'true' / 'false'; anything else goes to the model as sent."""
    if value == "true":
        return True
    if value == "false":
        return False
    return text(value)


def epoch_ms(moment: datetime) -> int:
    """Exact milliseconds since the epoch (integer arithmetic: no float rounding at the boundary)."""
    return (moment - EPOCH) // _ONE_MS


def key_part(value: Any) -> str:
    """A short stable piece of an id built from a value: the value itself when short and plain."""
    raw = "" if value is None else str(value)
    if _PLAIN_KEY.fullmatch(raw):
        return raw
    return hashlib.blake2b(raw.encode(), digest_size=6).hexdigest()
