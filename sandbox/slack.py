"""A fake Slack Web API that the real slack-sdk ``WebClient`` talks to unchanged.

``WebClient(token=T, base_url=fake.base_url + "/api/")`` posts every method to
``/api/{method}``; this server answers like slack.com so the alert delivery code meets Slack's
real refusals (unknown channel, archived channel, over-long blocks, 429) before production does,
and keeps what a person in the channel would see (:meth:`FakeSlack.transcript`).

Vendor behaviour followed, by source:

- Web API basics: https://api.slack.com/web - arguments as query string, form body, or a mix;
  JSON bodies need the token in ``Authorization: Bearer`` (changelog
  https://api.slack.com/changelog/2017-10-keeping-up-with-the-jsons), a token in the query string
  is refused for apps created since 2021
  (https://api.slack.com/changelog/2020-11-no-more-tokens-in-querystrings-for-newly-created-apps).
  Errors are HTTP 200 ``{"ok": false, "error": ...}``. An unknown method is observed to be HTTP 200
  ``{"ok": false, "error": "unknown_method", "req_method": ...}``, checked before the token.
- auth.test: https://api.slack.com/methods/auth.test
- chat.postMessage: https://api.slack.com/methods/chat.postMessage - channel by id or name;
  ``channel_not_found``, ``not_in_channel``, ``is_archived``, ``no_text``, ``msg_too_long`` (the page
  says text over 40,000 characters "risks truncation" and also lists ``msg_too_long``; the fake
  refuses), ``invalid_blocks`` / ``invalid_blocks_format``. The page documents no error for an
  unknown ``thread_ts``: Slack answers ok and the reply shows nowhere (observed,
  slackapi/python-slack-sdk#840), so the fake accepts it and the transcript flags it as invisible;
  a ts that is not ``digits.digits`` is ``invalid_thread_ts`` (observed, jenkinsci/slack-plugin#584).
  ``msg_blocks_too_long`` is undocumented (observed near 13k characters of block text,
  slackapi/bolt-js#2509); the fake refuses above 12,000, the bound our design keeps to.
- chat.update: https://api.slack.com/methods/chat.update - channel id and ``ts``;
  ``message_not_found``; ``blocks`` or ``text`` left out keep their previous value (older page
  text: "If you don't include this field, the message's previous blocks will be retained"; seen as
  "text-only update does nothing" in slackapi/python-slack-sdk#523).
- conversations.list: https://api.slack.com/methods/conversations.list and cursor pagination
  https://api.slack.com/docs/pagination (``limit`` at most 1,000, ``next_cursor`` empty on the last
  page, ``invalid_cursor``).
- Rate limits: https://api.slack.com/apis/rate-limits - chat.postMessage allows about one message
  per second per channel with short bursts; over it, HTTP 429 with ``Retry-After`` in whole seconds
  and ``{"ok": false, "error": "ratelimited"}`` (the ``ratelimited`` code is on the chat.update page).
- Block Kit: https://api.slack.com/reference/block-kit/blocks (at most 50 blocks; block_id at most
  255 characters and unique in a message), section (text <= 3,000, fields <= 10 of <= 2,000),
  header (plain_text <= 150), context (<= 10 elements), actions (<= 25 elements), image
  (image_url <= 3,000, alt_text <= 2,000), text objects
  https://api.slack.com/reference/block-kit/composition-objects#text (plain_text | mrkdwn, 1 to
  3,000 characters), button text <= 75. Refusals carry ``errors`` and
  ``response_metadata.messages`` as observed: ``"[ERROR] must be less than 3001 characters
  [json-pointer:/blocks/0/text/text]"``; the wording of other messages is the fake's own.

- Message metadata: https://api.slack.com/metadata/using - ``metadata`` on chat.postMessage
  (``event_type`` and ``event_payload``, JSON object or string); it comes back from
  conversations.history / conversations.replies only with ``include_all_metadata``
  (https://api.slack.com/methods/conversations.history: newest first, ``oldest`` / ``latest``
  exclusive bounds unless ``inclusive``, ``limit`` default 100 at most 999, ``has_more`` and
  ``response_metadata.next_cursor``; thread replies are not in the history, only their parent).
  conversations.replies: https://api.slack.com/methods/conversations.replies (the parent first,
  then replies oldest first; ``thread_not_found``).
- Uploads: https://api.slack.com/messaging/files#uploading_files - files.getUploadURLExternal
  (``filename``, ``length``) answers ``upload_url`` and ``file_id``; the bytes are POSTed there;
  files.completeUploadExternal (``files`` JSON list of ``{id, title}``, ``channel_id``,
  ``initial_comment``, ``thread_ts``) shares them, which shows as a message in the channel.

Not modelled: attachments, user (xoxp) tokens, scopes, chat.update of another user's
message (every message here is the bot's), ``reply_broadcast``, methods other than the ones above
(they answer ``unknown_method``).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import orjson

from sandbox.faults import Fault, FaultKind
from sandbox.httpbase import FakeServer, Request, Response

TEXT_LIMIT = 40_000
BLOCKS_TEXT_LIMIT = 12_000
MAX_BLOCKS = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_THREAD_TS = re.compile(r"\d+\.\d+")


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    is_member: bool = True
    is_archived: bool = False
    is_private: bool = False


DEFAULT_CHANNELS = (
    Channel("C0SALES01", "sales-alerts"),
    Channel("C0SALES02", "sales-leadership", is_private=True),
    Channel("C0SALES03", "sales-ops"),
    Channel("C0ARCHIV1", "q1-pipeline-review", is_archived=True),
    Channel("C0GENERAL", "general", is_member=False),
)


@dataclass(frozen=True)
class Revision:
    """A message's content before a chat.update replaced it."""

    text: str
    blocks: list[dict[str, Any]]
    replaced_ts: str  # the edit's own ts


@dataclass(frozen=True)
class UploadedFile:
    """A file shared with files.completeUploadExternal."""

    id: str
    title: str
    filename: str
    content: bytes


@dataclass(frozen=True)
class Message:
    """A message Slack accepted, as it stands now (``history``: earlier versions, oldest first)."""

    channel: str
    channel_name: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    history: tuple[Revision, ...] = ()
    metadata: dict[str, Any] | None = None  # {"event_type", "event_payload"} as posted
    files: tuple[UploadedFile, ...] = ()

    @property
    def edited(self) -> bool:
        return bool(self.history)


class SlackError(Exception):
    """A refusal Slack states in the body: HTTP 200, ``ok`` false."""

    def __init__(self, code: str, messages: list[str] | None = None, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.messages = messages or []
        self.extra = extra

    def response(self) -> Response:
        body: dict[str, Any] = {"ok": False, "error": self.code, **self.extra}
        if self.messages:
            body["errors"] = self.messages
            body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in self.messages]}
        return Response(200, body)


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def ratelimited(retry_after: int) -> Response:
    return Response(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


def _system_clock() -> datetime:
    return datetime.now(UTC)


class _PostLimiter:
    """Per-channel token bucket: ``rate`` messages per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.monotonic = monotonic
        self.buckets: dict[str, tuple[float, float]] = {}  # channel id -> (tokens, at)

    def take(self, channel_id: str) -> None:
        now = self.monotonic()
        tokens, last = self.buckets.get(channel_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[channel_id] = (tokens, now)
            raise RateLimited(max(1, math.ceil((1 - tokens) / self.rate)))
        self.buckets[channel_id] = (tokens - 1, now)


class FakeSlack(FakeServer):
    """Slack Web API on loopback for one workspace whose bot owns ``token``.

    ``clock`` stamps message ``ts`` values (unique and increasing even when the clock stands
    still). ``post_rate`` (messages per second per channel, None: unlimited) and ``post_burst``
    turn on chat.postMessage rate limiting, timed by ``monotonic``; only a post that passed every
    other check spends the channel's allowance.
    """

    name = "fake-slack"
    team_id = "T0SANDBOX"
    team = "Acme Sandbox"
    bot_user = "salespulse"
    bot_user_id = "U0SALESPL"
    bot_id = "B0SALESPL"
    app_id = "A0SALESPL"

    def __init__(
        self,
        *,
        token: str = "xoxb-sandbox-token",
        channels: Iterable[Channel] = DEFAULT_CHANNELS,
        clock: Callable[[], datetime] = _system_clock,
        post_rate: float | None = None,
        post_burst: int = 1,
        monotonic: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(ssl_context=ssl_context, port=port)
        self.token = token
        self.channels = list(channels)
        self.clock = clock
        self._limiter = _PostLimiter(post_rate, post_burst, monotonic) if post_rate else None
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._last_us = 0
        self._uploads: dict[str, tuple[str, int, bytes | None]] = {}  # file id -> (filename, length, bytes)
        # Called with each accepted post (and file share) before Slack answers (tests kill the client there).
        self.on_post: Callable[[Message], None] | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.list": self._conversations_list,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }
        for verb in ("GET", "POST"):
            self.route(verb, r"/api/(?P<method>[^/]+)", self._call)
        self.route("POST", r"/upload/v1/(?P<file_id>[^/?]+)", self._receive_upload)

    def reset(self) -> None:
        """Forget messages, rate-limit state, armed faults and seen requests (one server, many tests)."""
        with self._lock:
            self._messages.clear()
            self._uploads.clear()
            self._last_us = 0
            if self._limiter is not None:
                self._limiter.buckets.clear()
        self.faults.clear()
        self.requests.clear()

    # -- what tests and the demo read --------------------------------------------
    def channel_id(self, name: str) -> str:
        channel = self._by_name(name)
        if channel is None:
            raise KeyError(name)
        return channel.id

    def messages(self, channel: str | None = None) -> list[Message]:
        """Accepted messages in ts order; ``channel`` by id or name."""
        with self._lock:
            found = list(self._messages)
        if channel is not None:
            wanted = self._resolve(channel)
            found = [m for m in found if wanted is not None and m.channel == wanted.id]
        return sorted(found, key=lambda m: _ts_key(m.ts))

    def transcript(self, channel: str | None = None) -> str:
        """The channels' messages as a person would read them, thread replies indented."""
        messages = self.messages(channel)
        out: list[str] = []
        for channel_id in dict.fromkeys(m.channel for m in messages):
            in_channel = [m for m in messages if m.channel == channel_id]
            out.append(f"#{in_channel[0].channel_name}")
            tops = [m for m in in_channel if m.thread_ts is None]
            top_ts = {m.ts for m in tops}
            for top in tops:
                out += _render(top, "  ")
                for reply in (m for m in in_channel if m.thread_ts == top.ts):
                    out += _render(reply, "    ", mark="↳ ")
            for orphan in (m for m in in_channel if m.thread_ts is not None and m.thread_ts not in top_ts):
                out += _render(orphan, "  ", mark=f"(invisible: reply to unknown thread {orphan.thread_ts}) ")
        return "\n".join(out)

    # -- wire ---------------------------------------------------------------------
    def _call(self, request: Request) -> Response:
        try:
            return Response(200, {"ok": True, **self._run(request)})
        except SlackError as refusal:
            return refusal.response()
        except RateLimited as limited:
            return ratelimited(limited.retry_after)

    def _run(self, request: Request) -> dict[str, Any]:
        """The method's answer; Slack checks the method name before the token."""
        assert request.match is not None
        method = request.match["method"]
        handler = self._methods.get(method)
        if handler is None:
            raise SlackError("unknown_method", req_method=method)
        params, token = _arguments(request)
        if not token:
            raise SlackError("not_authed")
        if token != self.token:
            raise SlackError("invalid_auth")
        return handler(params)

    def not_found(self, request: Request, *, method_exists: bool) -> Response:  # noqa: ARG002
        return Response(404, b"<html><body><h1>404 Not Found</h1></body></html>", {"Content-Type": "text/html"})

    def fault_response(self, fault: Fault, request: Request) -> Response:  # noqa: ARG002
        if fault.kind is FaultKind.RATE_LIMIT:
            return ratelimited(fault.retry_after)
        if fault.kind is FaultKind.EXPIRED_SESSION:
            return SlackError("token_expired").response()
        if fault.kind is FaultKind.SERVER_ERROR and fault.status == 500:
            return Response(500, {"ok": False, "error": "fatal_error"})
        if fault.kind is FaultKind.SERVER_ERROR:
            page = f"<html><body><h1>{fault.status} Service Unavailable</h1></body></html>".encode()
            return Response(fault.status, page, {"Content-Type": "text/html"})
        raise ValueError(f"Slack has no {fault.kind} fault; arm rate_limit instead")

    # -- methods ------------------------------------------------------------------
    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG002
        return {
            "url": "https://acme-sandbox.slack.com/",
            "team": self.team,
            "user": self.bot_user,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(str(params.get("channel") or ""))
        if channel is None:
            raise SlackError("channel_not_found")
        if channel.is_archived:
            raise SlackError("is_archived")
        if not channel.is_member:
            raise SlackError("not_in_channel")
        text, blocks = _content(params)
        if not text and not blocks:
            raise SlackError("no_text")
        thread_ts = params.get("thread_ts")
        if thread_ts is not None:
            thread_ts = str(thread_ts)
            if not _THREAD_TS.fullmatch(thread_ts):
                raise SlackError("invalid_thread_ts", [f"{thread_ts} is not a valid thread_ts"])
        metadata = _metadata(params.get("metadata"))
        with self._lock:
            if self._limiter is not None:
                self._limiter.take(channel.id)
            message = Message(
                channel.id, channel.name, self._next_ts(), text or "", blocks or [], thread_ts, metadata=metadata
            )
            self._messages.append(message)
        if self.on_post is not None:
            self.on_post(message)
        return {"channel": channel.id, "ts": message.ts, "message": self._wire(message)}

    def _readable(self, params: dict[str, Any]) -> Channel:
        channel = next((c for c in self.channels if c.id == str(params.get("channel") or "")), None)
        if channel is None:
            raise SlackError("channel_not_found")
        if not channel.is_member and channel.is_private:
            raise SlackError("not_in_channel")
        return channel

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable(params)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
        oldest = _ts_key(str(params.get("oldest") or "0"))
        latest = _ts_key(str(params["latest"])) if params.get("latest") else None
        try:
            limit = min(max(int(params.get("limit") or 100), 1), 999)
        except ValueError:
            raise SlackError("invalid_limit") from None
        found = [
            m
            for m in reversed(self.messages(channel.id))
            if m.thread_ts is None
            and (_ts_key(m.ts) >= oldest if inclusive else _ts_key(m.ts) > oldest)
            and (latest is None or (_ts_key(m.ts) <= latest if inclusive else _ts_key(m.ts) < latest))
        ]
        start = int(params["cursor"]) if str(params.get("cursor") or "").isdigit() else 0
        page = found[start : start + limit]
        more = start + limit < len(found)
        return {
            "messages": [self._wire(m, with_metadata=with_metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable(params)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        ts = str(params.get("ts") or "")
        messages = self.messages(channel.id)
        parent = next((m for m in messages if m.ts == ts), None)
        if parent is None:
            raise SlackError("thread_not_found")
        thread = [parent, *(m for m in messages if m.thread_ts == ts)]
        return {"messages": [self._wire(m, with_metadata=with_metadata) for m in thread], "has_more": False}

    def _upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = str(params.get("filename") or "")
        try:
            length = int(params.get("length") or 0)
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if not filename or length <= 0:
            raise SlackError("invalid_arguments")
        with self._lock:
            file_id = f"F{len(self._uploads) + 1:08d}"
            self._uploads[file_id] = (filename, length, None)
        return {"upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    def _receive_upload(self, request: Request) -> Response:
        assert request.match is not None
        file_id = request.match["file_id"]
        with self._lock:
            known = self._uploads.get(file_id)
            if known is None:
                return Response(404, b"not found", {"Content-Type": "text/plain"})
            self._uploads[file_id] = (known[0], known[1], request.body)
        return Response(200, f"OK - {len(request.body)}".encode(), {"Content-Type": "text/plain"})

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = params.get("files")
        try:
            listed = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            raise SlackError("invalid_arguments") from None
        if not isinstance(listed, list) or not listed:
            raise SlackError("invalid_arguments")
        shared: list[UploadedFile] = []
        with self._lock:
            for item in listed:
                known = self._uploads.get(str(item.get("id") if isinstance(item, dict) else ""))
                if known is None or known[2] is None:
                    raise SlackError("file_not_found")
                shared.append(UploadedFile(str(item["id"]), str(item.get("title") or known[0]), known[0], known[2]))
        channel_ref = params.get("channel_id")
        if channel_ref:
            channel = self._resolve(str(channel_ref))
            if channel is None:
                raise SlackError("channel_not_found")
            if not channel.is_member:
                raise SlackError("not_in_channel")
            thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
            with self._lock:
                message = Message(
                    channel.id,
                    channel.name,
                    self._next_ts(),
                    str(params.get("initial_comment") or ""),
                    [],
                    thread_ts,
                    files=tuple(shared),
                )
                self._messages.append(message)
            if self.on_post is not None:
                self.on_post(message)
        return {"files": [{"id": f.id, "title": f.title, "name": f.filename} for f in shared]}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel_id = str(params.get("channel") or "")
        if not any(c.id == channel_id for c in self.channels):
            raise SlackError("channel_not_found")
        text, blocks = _content(params)
        if text is None and blocks is None:
            raise SlackError("no_text")
        ts = str(params.get("ts") or "")
        with self._lock:
            index = next((i for i, m in enumerate(self._messages) if m.channel == channel_id and m.ts == ts), None)
            if index is None:
                raise SlackError("message_not_found")
            old = self._messages[index]
            edit = Revision(old.text, old.blocks, self._next_ts())
            new = replace(
                old,
                text=old.text if text is None else text,
                blocks=old.blocks if blocks is None else blocks,
                history=(*old.history, edit),
            )
            if not new.text and not new.blocks:
                raise SlackError("no_text")
            self._messages[index] = new
        return {"channel": channel_id, "ts": ts, "text": new.text, "message": self._wire(new)}

    def _conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        types = set(str(params.get("types") or "public_channel").split(","))
        exclude_archived = str(params.get("exclude_archived", "")).lower() in ("1", "true")
        try:
            limit = min(max(int(params.get("limit") or 100), 1), 1000)
        except ValueError:
            raise SlackError("invalid_limit") from None
        listed = [
            c
            for c in self.channels
            if ("private_channel" if c.is_private else "public_channel") in types
            and not (exclude_archived and c.is_archived)
        ]
        start = 0
        if params.get("cursor"):
            start = _cursor_index(str(params["cursor"]), listed)
        page = listed[start : start + limit]
        rest = listed[start + limit :]
        next_cursor = base64.b64encode(f"team:{rest[0].id}".encode()).decode() if rest else ""
        return {"channels": [self._channel_wire(c) for c in page], "response_metadata": {"next_cursor": next_cursor}}

    # -- helpers ------------------------------------------------------------------
    def _by_name(self, name: str) -> Channel | None:
        bare = name.removeprefix("#")
        return next((c for c in self.channels if c.name == bare), None)

    def _resolve(self, ref: str) -> Channel | None:
        return next((c for c in self.channels if c.id == ref), None) or self._by_name(ref)

    def _next_ts(self) -> str:
        """Seconds.microseconds from the clock, nudged forward to stay unique (call under the lock)."""
        now_us = (self.clock() - _EPOCH) // timedelta(microseconds=1)
        self._last_us = max(now_us, self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _wire(self, message: Message, *, with_metadata: bool = False) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": message.text,
            "ts": message.ts,
        }
        if message.blocks:
            wire["blocks"] = message.blocks
        if message.thread_ts is not None:
            wire["thread_ts"] = message.thread_ts
        if message.history:
            wire["edited"] = {"user": self.bot_user_id, "ts": message.history[-1].replaced_ts}
        if with_metadata and message.metadata is not None:
            wire["metadata"] = message.metadata
        if message.files:
            wire["files"] = [{"id": f.id, "title": f.title, "name": f.filename} for f in message.files]
        return wire

    def _channel_wire(self, channel: Channel) -> dict[str, Any]:
        return {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "is_channel": not channel.is_private,
            "is_group": channel.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "is_archived": channel.is_archived,
            "is_general": channel.name == "general",
            "is_member": channel.is_member,
            "context_team_id": self.team_id,
        }


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    if not (seconds.isdigit() and (micros.isdigit() or not micros)):
        raise SlackError("invalid_ts_oldest")
    return int(seconds), int(micros.ljust(6, "0")[:6] or 0)


def _metadata(raw: Any) -> dict[str, Any] | None:
    """chat.postMessage ``metadata``: an object (or its JSON) with ``event_type`` and ``event_payload``."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise SlackError("invalid_metadata_format") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event_type"), str):
        raise SlackError("invalid_metadata_format")
    if not isinstance(raw.get("event_payload"), dict):
        raise SlackError("invalid_metadata_format")
    return {"event_type": raw["event_type"], "event_payload": raw["event_payload"]}


def _cursor_index(cursor: str, listed: list[Channel]) -> int:
    try:
        decoded = base64.b64decode(cursor, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    ids = [c.id for c in listed]
    channel_id = decoded.removeprefix("team:")
    if not decoded.startswith("team:") or channel_id not in ids:
        raise SlackError("invalid_cursor")
    return ids.index(channel_id)


# -- request arguments -------------------------------------------------------------


def _arguments(request: Request) -> tuple[dict[str, Any], str | None]:
    """The call's arguments (query string and body mixed) and its token.

    The token counts from the Authorization header or a form field only: Slack ignores one in a
    JSON body and refuses one in the query string.
    """
    params: dict[str, Any] = {k: v[0] for k, v in request.query.items() if k != "token"}
    token = None
    if request.body:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type:
            raise SlackError("missing_post_type")
        if content_type == "application/json":
            try:
                body = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                raise SlackError("invalid_json") from None
            if not isinstance(body, dict):
                raise SlackError("invalid_json")
            body.pop("token", None)
            params.update(body)
        elif content_type == "application/x-www-form-urlencoded":
            try:
                form = parse_qs(request.body.decode(), keep_blank_values=True, strict_parsing=True)
            except (UnicodeDecodeError, ValueError):
                raise SlackError("invalid_form_data") from None
            token = form.pop("token", [None])[0]
            params.update({k: v[0] for k, v in form.items()})
        else:
            raise SlackError("invalid_post_type")
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        token = auth.removeprefix("Bearer ").strip()
    return params, token


def _content(params: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """``text`` and ``blocks`` of a post or an edit (None: not given), checked against Slack's limits."""
    text = params.get("text")
    text = None if text is None else str(text)
    blocks = params.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = orjson.loads(blocks)
        except orjson.JSONDecodeError:
            raise SlackError("invalid_blocks_format") from None
    if blocks is not None and not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if text is not None and len(text) > TEXT_LIMIT:
        raise SlackError("msg_too_long")
    if blocks:
        problems = block_errors(blocks)
        if problems:
            raise SlackError("invalid_blocks", problems)
        if sum(len(s) for s in _strings(blocks, "text")) > BLOCKS_TEXT_LIMIT:
            raise SlackError("msg_blocks_too_long")
    return text, blocks


# -- Block Kit validation ----------------------------------------------------------

_TEXT_TYPES = ("plain_text", "mrkdwn")
_ELEMENT_TYPES = {
    "button",
    "checkboxes",
    "datepicker",
    "datetimepicker",
    "image",
    "multi_static_select",
    "multi_users_select",
    "multi_conversations_select",
    "multi_channels_select",
    "multi_external_select",
    "overflow",
    "radio_buttons",
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "timepicker",
    "workflow_button",
}
_RICH_TEXT_TYPES = {"rich_text_section", "rich_text_list", "rich_text_preformatted", "rich_text_quote"}


class _Check:
    """Collects Slack-style refusals, each ``"<what> [json-pointer:<where>]"``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, what: str, where: str) -> None:
        self.errors.append(f"{what} [json-pointer:{where}]")

    def string(self, obj: dict[str, Any], key: str, at: str, limit: int, *, required: bool = False) -> None:
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(f"missing required field: {key}", at)
        elif not isinstance(value, str):
            self.fail("must be a string", f"{at}/{key}")
        elif len(value) > limit:
            self.fail(f"must be less than {limit + 1} characters", f"{at}/{key}")

    def items(self, obj: dict[str, Any], key: str, at: str, limit: int) -> list[Any]:
        value = obj.get(key)
        if not isinstance(value, list) or not value:
            self.fail("must provide a non-empty array", f"{at}/{key}")
            return []
        if len(value) > limit:
            self.fail(f"no more than {limit} items allowed", f"{at}/{key}")
        return value

    def text(self, value: Any, at: str, limit: int, kinds: tuple[str, ...] = _TEXT_TYPES) -> None:
        """A text object; inside a one-of (plain_text | mrkdwn) Slack reports the schema miss first."""
        before = len(self.errors)
        if not isinstance(value, dict):
            self.fail("must be an object", at)
        elif value.get("type") not in kinds:
            self.fail(f"must be {' or '.join(kinds)}", f"{at}/type")
        elif not isinstance(value.get("text"), str):
            self.fail("must provide a string", f"{at}/text")
        elif not value["text"]:
            self.fail("must be more than 0 characters", f"{at}/text")
        elif len(value["text"]) > limit:
            self.fail(f"must be less than {limit + 1} characters", f"{at}/text")
        if len(kinds) > 1 and len(self.errors) > before:
            self.errors.insert(before, f"failed to match all allowed schemas [json-pointer:{at}]")

    def image(self, obj: dict[str, Any], at: str) -> None:
        if obj.get("image_url") is None and obj.get("slack_file") is None:
            self.fail("must provide either image_url or slack_file", at)
        self.string(obj, "image_url", at, 3000)
        self.string(obj, "alt_text", at, 2000, required=True)

    def element(self, obj: Any, at: str) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in _ELEMENT_TYPES:
            kind = obj.get("type") if isinstance(obj, dict) else None
            self.fail(f"unsupported element type: {kind}", f"{at}/type")
        elif obj["type"] == "button":
            self.text(obj.get("text"), f"{at}/text", 75, ("plain_text",))
            self.string(obj, "action_id", at, 255)
            self.string(obj, "url", at, 3000)
            self.string(obj, "value", at, 2000)
        elif obj["type"] == "image":
            self.image(obj, at)


def _section(check: _Check, block: dict[str, Any], at: str) -> None:
    if block.get("text") is None and block.get("fields") is None:
        check.fail("must provide either text or fields", at)
    if block.get("text") is not None:
        check.text(block["text"], f"{at}/text", 3000)
    if block.get("fields") is not None:
        for i, item in enumerate(check.items(block, "fields", at, 10)):
            check.text(item, f"{at}/fields/{i}", 2000)
    if block.get("accessory") is not None:
        check.element(block["accessory"], f"{at}/accessory")


def _context(check: _Check, block: dict[str, Any], at: str) -> None:
    for i, item in enumerate(check.items(block, "elements", at, 10)):
        if isinstance(item, dict) and item.get("type") == "image":
            check.image(item, f"{at}/elements/{i}")
        else:
            check.text(item, f"{at}/elements/{i}", 3000)


def _actions(check: _Check, block: dict[str, Any], at: str) -> None:
    for i, item in enumerate(check.items(block, "elements", at, 25)):
        check.element(item, f"{at}/elements/{i}")


def _image(check: _Check, block: dict[str, Any], at: str) -> None:
    check.image(block, at)
    if block.get("title") is not None:
        check.text(block["title"], f"{at}/title", 2000, ("plain_text",))


def _rich_text(check: _Check, block: dict[str, Any], at: str) -> None:
    for i, item in enumerate(check.items(block, "elements", at, 1000)):
        if not isinstance(item, dict) or item.get("type") not in _RICH_TEXT_TYPES:
            check.fail("unsupported rich text element", f"{at}/elements/{i}")


_BLOCKS: dict[str, Callable[[_Check, dict[str, Any], str], None]] = {
    "section": _section,
    "header": lambda check, block, at: check.text(block.get("text"), f"{at}/text", 150, ("plain_text",)),
    "context": _context,
    "divider": lambda check, block, at: None,
    "actions": _actions,
    "image": _image,
    "rich_text": _rich_text,
}


def block_errors(blocks: list[Any]) -> list[str]:
    """Every Block Kit limit the blocks break, as Slack words them (empty: valid)."""
    check = _Check()
    if len(blocks) > MAX_BLOCKS:
        check.fail(f"no more than {MAX_BLOCKS} items allowed", "/blocks")
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        at = f"/blocks/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            check.fail("missing required field: type", at)
            continue
        check.string(block, "block_id", at, 255)
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in seen:
                check.fail(f"duplicate block_id: {block_id}", f"{at}/block_id")
            seen.add(block_id)
        validate = _BLOCKS.get(block["type"])
        if validate is None:
            check.fail(f"unsupported block type: {block['type']}", f"{at}/type")
        else:
            validate(check, block, at)
    return check.errors


def _strings(value: Any, key: str) -> Iterator[str]:
    """Every string stored under ``key`` anywhere in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _strings(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)


# -- transcript rendering ----------------------------------------------------------

_ANGLE = re.compile(r"<([^<>]*)>")


def _unmark(text: str) -> str:
    """Slack's angle-bracket syntax and entity escapes, as the reader sees them."""

    def one(m: re.Match[str]) -> str:
        target, _, label = m.group(1).partition("|")
        if target.startswith(("@", "#")):
            return label or target
        if target.startswith("!"):
            return label or "@" + target[1:].split("^")[0]
        return f"{label} ({target})" if label else target

    text = _ANGLE.sub(one, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(obj: Any) -> str:
    return _unmark(obj.get("text", "")) if isinstance(obj, dict) else ""


def _block_lines(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"=== {_text_of(block.get('text'))} ==="]
    if kind == "section":
        lines = _text_of(block.get("text")).splitlines() if block.get("text") else []
        fields = [_text_of(f) for f in block.get("fields") or []]
        lines += [" | ".join(fields[i : i + 2]) for i in range(0, len(fields), 2)]
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            lines.append(f"[{_text_of(accessory.get('text'))}]")
        return lines
    if kind == "context":
        parts = [
            f"[image: {e.get('alt_text', '')}]" if e.get("type") == "image" else _text_of(e) for e in block["elements"]
        ]
        return ["~ " + " · ".join(parts)]
    if kind == "divider":
        return ["-" * 40]
    if kind == "actions":
        return [" ".join(f"[{_text_of(e.get('text')) or e.get('type')}]" for e in block["elements"])]
    if kind == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    return "".join(_strings(block, "text")).splitlines()  # rich_text


def _render(message: Message, indent: str, mark: str = "") -> list[str]:
    edited = " (edited)" if message.edited else ""
    body = [line for b in message.blocks for line in _block_lines(b)] or _unmark(message.text).splitlines()
    return [f"{indent}{mark}[{message.ts}] {FakeSlack.bot_user}{edited}"] + [f"{indent}  {line}" for line in body]
