"""Talking to Slack: slack-sdk's WebClient with retry handlers, and Slack's answers sorted by what to do.

Three kinds of failure, because the outbox acts differently on each:
- :class:`SlackRefused` (``ok: false`` with a permanent code such as ``channel_not_found``): the
  message was not posted and never will be as it stands; stop retrying it and say how to fix it.
  ``scope`` tells whether the whole workspace is refused (``invalid_auth``, ``missing_scope``):
  then every notification waits for the fix instead of being given up one by one.
- :class:`SlackUnavailable` with ``maybe_posted`` False (429 after the SDK's own retries): not
  posted; try again later.
- :class:`SlackUnavailable` with ``maybe_posted`` True (timeout, dropped connection, 5xx): Slack
  may have posted it; before posting again, look for it in the channel (message metadata).
"""

from __future__ import annotations

import http.client
import re
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from models.errors import FatalError, RetriableError
from models.settings import SlackSettings

EVENT_TYPE = "salespulse_notification"

# code -> how to fix it; "{channel}" is filled in.
FIXES = {
    "channel_not_found": "no channel {channel}: create it, or fix the rule's channel / slack.team_channels",
    "not_in_channel": "the bot is not in {channel}: invite it there (/invite @salespulse)",
    "is_archived": "{channel} is archived: unarchive it or route the rule to another channel",
    "invalid_auth": "Slack refused the token: set a valid bot token in SALESPULSE_SLACK__TOKEN",
    "not_authed": "no Slack token: set SALESPULSE_SLACK__TOKEN",
    "token_revoked": "the Slack token was revoked: install the app again and set the new token",
    "token_expired": "the Slack token expired: set a fresh one in SALESPULSE_SLACK__TOKEN",
    "account_inactive": "the Slack bot user was deactivated: reinstall the app",
    "missing_scope": "the bot token lacks a scope: add chat:write (and channels:history, groups:history, "
    "files:write) to the Slack app and reinstall it",
    "msg_too_long": "the message was too long for Slack (a bug: messages keep a size budget)",
    "msg_blocks_too_long": "the message's blocks were too long for Slack (a bug: messages keep a size budget)",
    "invalid_blocks": "Slack refused the message's blocks (a bug in the rendering)",
}
WORKSPACE_CODES = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "missing_scope"}
RETRY_CODES = {"ratelimited", "fatal_error", "internal_error", "service_unavailable", "request_timeout"}


class SlackRefused(FatalError):
    """Slack answered ``ok: false``: retrying the same message cannot succeed."""

    def __init__(self, code: str, channel: str) -> None:
        fix = FIXES.get(code, "see https://api.slack.com/methods for this error").format(channel=channel)
        super().__init__(f"Slack refused: {code}: {fix}")
        self.code = code
        self.workspace = code in WORKSPACE_CODES


class SlackUnavailable(RetriableError):
    """Slack did not answer usefully; ``maybe_posted``: the request may have been carried out."""

    def __init__(self, message: str, *, maybe_posted: bool) -> None:
        super().__init__(message)
        self.maybe_posted = maybe_posted


@dataclass(frozen=True)
class Posted:
    channel_id: str
    ts: str


class SlackTransport:
    """The few Slack calls alerting makes, each turning failures into the errors above."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._channel_ids: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: SlackSettings) -> SlackTransport:
        token = settings.token.get_secret_value() if settings.token else None
        client = WebClient(token=token, base_url=settings.base_url, timeout=int(max(1, settings.timeout_s)))
        # Connection failures before anything was sent (URLError: refused, DNS) are safe to repeat
        # at once; a timeout or a reset after sending is not, so those reach the outbox, which
        # looks for the message before posting again.
        client.retry_handlers = [
            ConnectionErrorRetryHandler(max_retry_count=2, error_types=[urllib.error.URLError]),
            RateLimitErrorRetryHandler(max_retry_count=2),
        ]
        return cls(client)

    def post(
        self, channel: str, message: dict[str, Any], *, notification_id: int | None, thread_ts: str | None = None
    ) -> Posted:
        """Post a message; ``notification_id`` goes along as metadata so a retry can find it."""
        metadata = None
        if notification_id is not None:
            metadata = {"event_type": EVENT_TYPE, "event_payload": {"id": str(notification_id)}}
        response = self._call(
            channel,
            self.client.chat_postMessage,
            channel=channel,
            text=message["text"],
            blocks=message["blocks"],
            thread_ts=thread_ts,
            metadata=metadata,
            unfurl_links=False,
            unfurl_media=False,
        )
        return Posted(str(response["channel"]), str(response["ts"]))

    def update(self, channel_id: str, ts: str, message: dict[str, Any]) -> None:
        self._call(
            channel_id,
            self.client.chat_update,
            channel=channel_id,
            ts=ts,
            text=message["text"],
            blocks=message["blocks"],
        )

    def find_posted(
        self, channel: str, notification_id: int, *, since: datetime, thread_ts: str | None = None
    ) -> Posted | None:
        """The message an earlier attempt posted for this notification, if Slack has it."""
        wanted = str(notification_id)

        def ours(message: dict[str, Any]) -> bool:
            meta = message.get("metadata") or {}
            return meta.get("event_type") == EVENT_TYPE and str((meta.get("event_payload") or {}).get("id")) == wanted

        return self._find(channel, ours, since=since, thread_ts=thread_ts)

    def find_upload(
        self, channel: str, filename: str, *, since: datetime, thread_ts: str | None = None
    ) -> Posted | None:
        """The message an earlier upload shared a file named ``filename`` in, if Slack has it (a file share
        carries no metadata; the outbox names each file after its notification instead)."""

        def ours(message: dict[str, Any]) -> bool:
            return any(f.get("name") == filename for f in message.get("files") or [])

        return self._find(channel, ours, since=since, thread_ts=thread_ts)

    def _find(
        self, channel: str, ours: Callable[[dict[str, Any]], bool], *, since: datetime, thread_ts: str | None
    ) -> Posted | None:
        channel_id = self.channel_id(channel)
        oldest = f"{since.timestamp():.6f}"
        # Thread replies are not in the channel history: a reply is looked for in its thread.
        method, where = (self.client.conversations_history, {"oldest": oldest})
        if thread_ts is not None:
            method, where = self.client.conversations_replies, {"ts": thread_ts}
        cursor: str | None = None
        while True:
            response = self._call(
                channel, method, channel=channel_id, include_all_metadata=True, limit=200, cursor=cursor, **where
            )
            for message in response.get("messages") or []:
                if ours(message):
                    return Posted(channel_id, str(message["ts"]))
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or not cursor:
                return None

    def channel_id(self, channel: str) -> str:
        """A channel's id from its id or name (conversations.list, cached)."""
        if channel in self._channel_ids:
            return self._channel_ids[channel]
        name = channel.removeprefix("#")
        cursor: str | None = None
        while True:
            response = self._call(
                channel,
                self.client.conversations_list,
                types="public_channel,private_channel",
                limit=1000,
                cursor=cursor,
            )
            for found in response.get("channels") or []:
                self._channel_ids["#" + found["name"]] = found["id"]
                self._channel_ids[found["name"]] = found["id"]
                self._channel_ids[found["id"]] = found["id"]
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if channel in self._channel_ids or name in self._channel_ids or not cursor:
                break
        if name not in self._channel_ids and channel not in self._channel_ids:
            raise SlackRefused("channel_not_found", channel)
        return self._channel_ids.get(channel) or self._channel_ids[name]

    def upload_png(
        self,
        channel: str,
        content: bytes,
        *,
        filename: str,
        title: str,
        comment: str | None = None,
        thread_ts: str | None = None,
    ) -> None:
        self._call(
            channel,
            self.client.files_upload_v2,
            channel=self.channel_id(channel),
            content=content,
            filename=filename,
            title=title,
            initial_comment=comment,
            thread_ts=thread_ts,
        )

    def _call(self, where: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**{k: v for k, v in kwargs.items() if v is not None})
        except SlackApiError as exc:
            status = exc.response.status_code
            code = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
            # slack-sdk puts a whole HTML error page in "error" when the answer is not JSON: no code then
            code = code if re.fullmatch(r"[a-z_]{1,60}", code) else ""
            if status == 429 or code == "ratelimited":
                raise SlackUnavailable("Slack rate limit (429) persisted", maybe_posted=False) from None
            if status >= 500 or code in RETRY_CODES or not code:
                raise SlackUnavailable(f"Slack answered HTTP {status} {code}".strip(), maybe_posted=True) from None
            raise SlackRefused(code, where) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, urllib.error.URLError) as exc:
            raise SlackUnavailable(f"no answer from Slack: {type(exc).__name__}", maybe_posted=True) from None
        except SlackClientError as exc:
            raise SlackUnavailable(f"Slack client error: {exc}", maybe_posted=True) from None
