"""Sending what the outbox holds, exactly once, whatever dies when.

A notification is a row in ``notifications`` before anything is sent. Sending one is:
1. commit ``status = 'sending'`` with ``attempted_at`` (from here the outcome is unknown);
2. ``chat.postMessage`` with the row id as message ``metadata`` (``salespulse_notification``);
3. on Slack's ``ok``, commit ``status = 'sent'`` with the channel id and ``ts``.
A process killed between 2 and 3 leaves the row ``sending``; so does a timeout or a 5xx, after
which Slack may or may not have posted. Before posting such a row again, :func:`flush` reads the
channel's history since the attempt (``conversations.history`` / ``conversations.replies`` with
``include_all_metadata``) and, when the id is there, records that message instead of posting a
second one. The digest is a row like any (``kind = 'digest'``); its chart a reply row (``chart``)
uploaded into the digest's thread once the digest is sent, named after its row id so that an
upload whose answer was lost is found in the thread (a file share carries no metadata).

A row Slack refused for good (unknown or archived channel, bot not invited) is ``failed`` with
the fix in ``last_error``; a refusal of the whole workspace (bad token, missing scope) stops
the run and keeps every row for after the fix. Outages back off across runs.

One sender at a time (the daemon and a hand-run ``check`` may overlap): the sender holds the
``slack-outbox`` row of ``sync_locks``, taken over from a dead process at once and from a
silent one after ``lock_timeout_s``; two senders could otherwise both find a row's outcome
unknown, both miss it in the history, and both post it.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, and_, func, or_, select, update

from alerts.slack import Posted, SlackRefused, SlackTransport, SlackUnavailable
from models.settings import SlackSettings
from models.tables import notifications
from sync.lock import SyncLocked, heartbeat, source_lock

log = logging.getLogger(__name__)

HISTORY_MARGIN = timedelta(minutes=10)  # clock skew between us and Slack when reading history back
LOCK = "slack-outbox"


@dataclass
class FlushResult:
    """What one flush did; ``stopped`` says why it stopped early (an outage or a workspace refusal)."""

    sent: int = 0
    found_posted: int = 0  # earlier attempts that Slack had posted after all
    updated: int = 0
    failed: int = 0
    retrying: int = 0
    deferred: int = 0  # replies waiting for the message they belong to
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pacing:
    """Slack takes about one message per second per channel; outages back off across runs."""

    post_interval_s: float = 1.0
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    # How long a post can still land after it was sent (the client's timeout and its retries): a row
    # left 'sending' by a process that died mid-post is not looked at again before then, or another
    # process (a new leader) would find nothing in the history yet and post it a second time.
    in_flight_s: float = 60.0
    lock_timeout_s: int = 3600  # a sender silent this long is taken over
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


def pacing_for(slack: SlackSettings) -> Pacing:
    """The pacing the settings ask for. A post is in flight for at most its request timeout, three
    times over (slack-sdk retries a rate-limited post twice), plus the Retry-After waits. A live
    sender beats its lock after every row, so one silent for twice that is gone: a standby daemon on
    another host (where its pid cannot be checked) takes the outbox over in minutes, not an hour."""
    in_flight = 3 * slack.timeout_s + 10
    return Pacing(
        post_interval_s=slack.post_interval_s,
        retry_base_s=slack.retry_base_s,
        retry_max_s=slack.retry_max_s,
        in_flight_s=in_flight,
        lock_timeout_s=int(2 * in_flight),
    )


def flush(engine: Engine, slack: SlackTransport, now: datetime, pacing: Pacing | None = None) -> FlushResult:
    """Send every due notification in order; replies wait for their parent message."""
    pacing = pacing or Pacing()
    result = FlushResult()
    last_post: dict[str, float] = {}
    started = pacing.monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=pacing.monotonic() - started)

    try:
        with source_lock(engine, LOCK, clock, pacing.lock_timeout_s) as holder:
            with engine.connect() as conn:
                due = conn.execute(
                    select(notifications)
                    .where(notifications.c.status.in_(("pending", "sending")), notifications.c.next_attempt_at <= now)
                    .order_by(notifications.c.id)
                ).all()
            for row in due:
                try:
                    _send_one(engine, slack, row, now, pacing, last_post, result)
                except _Stop as stop:
                    result.stopped = stop.reason
                    break
                with engine.begin() as conn:
                    heartbeat(conn, LOCK, holder, clock)
    except SyncLocked as busy:
        result.stopped = f"another process is sending the outbox; it (or the next run) sends the rest: {busy}"
    return result


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _send_one(
    engine: Engine,
    slack: SlackTransport,
    row: Row[Any],
    now: datetime,
    pacing: Pacing,
    last_post: dict[str, float],
    result: FlushResult,
) -> None:
    channel, thread_ts = row.channel, None
    if row.thread_of is not None:
        with engine.connect() as conn:
            parent = conn.execute(select(notifications).where(notifications.c.id == row.thread_of)).one()
        if parent.status in ("pending", "sending"):
            result.deferred += 1
            return
        if parent.status == "sent":
            channel, thread_ts = parent.slack_channel_id, parent.slack_ts
        elif row.kind == "update":
            _finish(engine, row.id, status="failed", last_error="the message to update was never posted")
            result.failed += 1
            return
    payload = json.loads(row.payload)
    unknown = row.status == "sending"
    try:
        if row.kind == "update":
            slack.update(channel, thread_ts, payload)
            _finish(engine, row.id, status="sent", sent_at=now, slack_channel_id=channel, slack_ts=thread_ts)
            result.updated += 1
            return
        if unknown:
            since = row.attempted_at - HISTORY_MARGIN
            if row.kind == "chart":
                found = slack.find_upload(channel, _chart_name(row.id, payload), since=since, thread_ts=thread_ts)
            else:
                found = slack.find_posted(channel, row.id, since=since, thread_ts=thread_ts)
            if found is not None:
                _finish(
                    engine, row.id, status="sent", sent_at=now, slack_channel_id=found.channel_id, slack_ts=found.ts
                )
                log.info("notification=%d was posted by an earlier attempt (ts %s); not posted again", row.id, found.ts)
                result.found_posted += 1
                return
        _pace(channel, pacing, last_post)
        with engine.begin() as conn:
            conn.execute(
                update(notifications)
                .where(notifications.c.id == row.id)
                .values(
                    status="sending",
                    attempts=notifications.c.attempts + 1,
                    attempted_at=now,
                    next_attempt_at=now + timedelta(seconds=pacing.in_flight_s),
                )
            )
        unknown = True
        if row.kind == "chart":
            slack.upload_png(
                channel,
                base64.b64decode(payload["png_base64"]),
                filename=_chart_name(row.id, payload),
                title=payload["title"],
                thread_ts=thread_ts,
            )
            # files.completeUploadExternal answers with the file, not the message that shares it
            posted = Posted(slack.channel_id(channel), thread_ts or "")
        else:
            posted = slack.post(channel, payload, notification_id=row.id, thread_ts=thread_ts)
        last_post[channel] = pacing.monotonic()
        _finish(
            engine, row.id, status="sent", sent_at=now, slack_channel_id=posted.channel_id, slack_ts=posted.ts or None
        )
        result.sent += 1
    except SlackRefused as refused:
        message = f"notification {row.id} to {channel}: {refused}"
        log.error("%s", message)  # noqa: TRY400 - the reason and the fix are the point, not a traceback
        result.errors.append(message)
        if refused.workspace:
            # Nothing was posted; every notification waits for the fix rather than being given up.
            _finish(engine, row.id, status="pending", last_error=str(refused), next_attempt_at=now)
            raise _Stop(str(refused)) from None
        _finish(engine, row.id, status="failed", last_error=str(refused))
        result.failed += 1
    except SlackUnavailable as outage:
        attempts = row.attempts + 1
        delay = min(pacing.retry_base_s * 2 ** (attempts - 1), pacing.retry_max_s)
        status = "sending" if unknown and outage.maybe_posted else ("sending" if row.status == "sending" else "pending")
        if status == "sending":
            # The post may still land (Slack answering after our timeout): the history is not read
            # before it can no longer land, or the message would be posted a second time.
            delay = max(delay, pacing.in_flight_s)
        _finish(
            engine,
            row.id,
            status=status,
            last_error=str(outage),
            next_attempt_at=now + timedelta(seconds=delay),
        )
        log.warning("notification=%d to %s: %s; next attempt in %.0f s", row.id, channel, outage, delay)
        result.retrying += 1
        raise _Stop(str(outage)) from None


def _chart_name(notification_id: int, payload: dict[str, Any]) -> str:
    """The uploaded file's name, which carries the row id: a file share has no metadata, and an upload
    whose answer was lost is looked for by this name before uploading again."""
    return f"salespulse-{notification_id}-{payload['filename']}"


def _pace(channel: str, pacing: Pacing, last_post: dict[str, float]) -> None:
    if channel in last_post and pacing.post_interval_s > 0:
        wait = last_post[channel] + pacing.post_interval_s - pacing.monotonic()
        if wait > 0:
            pacing.sleep(wait)


def _finish(engine: Engine, notification_id: int, **values: Any) -> None:
    if values.get("status") == "sent":
        values.setdefault("last_error", None)
    with engine.begin() as conn:
        conn.execute(update(notifications).where(notifications.c.id == notification_id).values(**values))


@dataclass(frozen=True)
class OutboxStatus:
    """The outbox as ``status`` shows it."""

    pending: int
    unknown: int  # attempted, outcome not yet checked
    sent_today: int
    failed: list[tuple[int, str, str, str]]  # (id, channel, kind, reason)
    waiting: list[tuple[int, str, str]]  # pending with an error: (id, channel, reason)


def outbox_status(engine: Engine, now: datetime, day_start: datetime) -> OutboxStatus:
    """Pending, unknown-outcome, failed (with reasons) and sent since ``day_start``."""
    n = notifications.c
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(n.status, func.count()).where(n.status.in_(("pending", "sending"))).group_by(n.status)
            ).all()
        )
        sent_today = conn.execute(
            select(func.count()).where(and_(n.status == "sent", n.sent_at >= day_start, n.sent_at <= now))
        ).scalar_one()
        failed = conn.execute(
            select(n.id, n.channel, n.kind, n.last_error).where(n.status == "failed").order_by(n.id.desc()).limit(20)
        ).all()
        waiting = conn.execute(
            select(n.id, n.channel, n.last_error)
            .where(or_(n.status == "pending", n.status == "sending"), n.last_error.is_not(None))
            .order_by(n.id)
            .limit(20)
        ).all()
    return OutboxStatus(
        counts.get("pending", 0),
        counts.get("sending", 0),
        sent_today,
        [(r.id, r.channel, r.kind, r.last_error or "") for r in failed],
        [(r.id, r.channel, r.last_error or "") for r in waiting],
    )


def requeue_failed(engine: Engine, now: datetime, ids: Sequence[int] = ()) -> int:
    """Put failed notifications (all, or these ids) back in the queue once the cause is fixed."""
    n = notifications.c
    query = update(notifications).where(n.status == "failed")
    if ids:
        query = query.where(n.id.in_(list(ids)))
    with engine.begin() as conn:
        return conn.execute(query.values(status="pending", next_attempt_at=now, last_error=None)).rowcount
