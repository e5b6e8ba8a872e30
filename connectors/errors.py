"""Connector errors, by what the sync engine does about them.

- :class:`AuthError` (fatal): re-authenticate once; if that fails too, stop the source.
- :class:`RateLimited` (retriable): wait ``retry_after`` seconds, then retry.
- :class:`TransientError` (retriable): 5xx, timeouts, dropped connections, truncated
  answers: retry with exponential back-off and jitter, a bounded number of times.
- :class:`StreamFailed` (fatal): this stream cannot go on (a query the CRM refuses, retries
  exhausted); its cursor stays where the last committed page left it. :class:`Forbidden`,
  a refused scope, is one.

Bad records are not exceptions: a stream yields them as ``Rejected`` items.
"""

from __future__ import annotations

from models.errors import FatalError, RetriableError


class AuthError(FatalError):
    """The CRM refused our credentials (expired session, revoked token)."""


class RateLimited(RetriableError):
    def __init__(self, message: str, *, retry_after: float, **fields: object) -> None:
        super().__init__(message, retry_after=retry_after, **fields)
        self.retry_after = retry_after


class TransientError(RetriableError):
    """The same request may well succeed in a moment."""


class StreamFailed(FatalError):
    """The stream stops; the engine keeps its cursor and reports the reason."""


class Forbidden(StreamFailed):
    """The CRM refuses our credentials this object (a missing scope or permission): asking again will
    not help, and a stream whose object is optional (exchange rates) may go on without it."""
