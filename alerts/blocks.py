"""Slack Block Kit messages for alerts: what, how bad, who, the numbers, the worst cases, how to mute.

Why a budget rather than a fixed count: a rule can find 3 reps or 300, and names can be 5 or
500 characters long. Findings are added one by one while the message stays within Slack's
limits (50 blocks, 3,000 characters per section, 150 per header, and a total well under the
~12k characters of block text Slack accepts); the rest become "and N more". Every string that
came from a CRM is mrkdwn-escaped, so a deal named ``<!channel>`` pings nobody; every known
secret is replaced by ``***`` as the last step, so none can reach Slack or the outbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rules.findings import Finding, SampleRecord, Unit

MAX_BLOCKS = 50
SECTION_LIMIT = 3000
HEADER_LIMIT = 150
BLOCK_TEXT_BUDGET = 10_000  # all block text of one message; Slack refuses near 12-13k
FALLBACK_LIMIT = 2_000
SAMPLES_PER_FINDING = 5
_URL = re.compile(r"https?://[^\s<>|]+")
ICONS = {"critical": ":red_circle:", "warn": ":large_orange_circle:", "resolved": ":white_check_mark:"}
KIND_WORDS = {
    "repeat": ":repeat: Still firing",
    "severity": ":arrow_up_down: Severity changed",
    "resolved": ":white_check_mark: Resolved",
}


def escape(text: str) -> str:
    """mrkdwn-escape CRM text: ``&``, ``<``, ``>`` (in that order), so nothing in it is markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class View:
    """One alert as a message shows it: its finding and, for an edited message, its status now."""

    finding: Finding
    status: str = "firing"  # firing | resolved
    reason: str = ""  # why this notification (follow-ups show it)


@dataclass(frozen=True)
class Message:
    """A Slack message: Block Kit ``blocks`` and the plain ``text`` fallback (notifications, screen readers)."""

    text: str
    blocks: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


@dataclass(frozen=True)
class Context:
    """What every message of one rule says around the findings."""

    rule_id: str
    title: str  # the rule's description, or its id
    currency: str
    as_of: datetime


def format_value(value: float, unit: Unit, currency: str) -> str:
    """A measured number in plain words: 37 %, USD 41k, 12 days, 2.1x, z = -2.4."""
    if unit == "share":
        return f"{value * 100:.0f} %"
    if unit == "money":
        return f"{currency} {_compact(value)}"
    if unit == "days":
        return f"{value:.0f} days" if abs(value) >= 2 else f"{value:.1f} days"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit == "zscore":
        return f"z = {value:.1f}"
    return f"{value:,.0f}"


def _compact(amount: float) -> str:
    for size, suffix in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if abs(amount) >= size:
            return f"{amount / size:.3g}{suffix}"
    return f"{amount:.0f}"


def announcement(ctx: Context, views: Sequence[View]) -> Message:
    """The message that announces a rule's alerts in one channel (or, edited, shows them resolved)."""
    live = [v for v in views if v.status != "resolved"]
    worst = "critical" if any(v.finding.severity == "critical" for v in live) else "warn"
    noun = _noun(views)
    if not live:
        head = f"{ICONS['resolved']} Resolved: {ctx.title} ({len(views)} {noun})"
    else:
        head = f"{ICONS[worst]} {worst.capitalize()}: {ctx.title} ({len(live)} {noun})"
    blocks: list[dict[str, Any]] = [_header(head)]
    blocks += _findings(views, ctx, reserve=2)
    blocks.append(_footer(ctx, views))
    names = ", ".join(v.finding.subject.name for v in views[:10])
    more = f" and {len(views) - 10} more" if len(views) > 10 else ""
    state = "Resolved" if not live else worst.upper()
    text = f"[{state}] {ctx.title}: {names}{more}"
    return Message(_clip(escape(text), FALLBACK_LIMIT), blocks)


def follow_up(ctx: Context, kind: str, views: Sequence[View]) -> Message:
    """A thread reply: still firing, severity changed, or resolved."""
    words = KIND_WORDS[kind]
    head = _section(f"*{words}* · {escape(ctx.title)} ({len(views)} {_noun(views)})")
    blocks = [head, *_findings(views, ctx, reserve=1, reasons=True), _footer(ctx, views)]
    names = ", ".join(v.finding.subject.name for v in views[:10])
    more = f" and {len(views) - 10} more" if len(views) > 10 else ""
    plain = re.sub(r":[a-z_]+: ", "", words)
    return Message(_clip(escape(f"{plain}: {ctx.title}: {names}{more}"), FALLBACK_LIMIT), blocks)


def _noun(views: Sequence[View]) -> str:
    types = {v.finding.subject.type for v in views}
    kind = types.pop() if len(types) == 1 else "subject"
    return kind.replace("_", " ") + ("" if len(views) == 1 else "s")


def _findings(views: Sequence[View], ctx: Context, *, reserve: int, reasons: bool = False) -> list[dict[str, Any]]:
    """Blocks for as many findings as fit, then "and N more" naming the rest."""
    out: list[dict[str, Any]] = []
    used = 0
    budget_blocks = MAX_BLOCKS - reserve - 1  # one more for "and N more"
    ordered = sorted(views, key=lambda v: (v.status == "resolved", v.finding.severity != "critical"))
    for shown, view in enumerate(ordered):
        blocks = _finding_blocks(view, ctx, reasons)
        size = sum(_text_size(b) for b in blocks)
        if len(out) + len(blocks) > budget_blocks or used + size > BLOCK_TEXT_BUDGET - 1500:
            rest = ordered[shown:]
            names = ", ".join(escape(v.finding.subject.name) for v in rest)
            out.append(_section(_clip(f"…and {len(rest)} more: {names}", SECTION_LIMIT // 2)))
            break
        out += blocks
        used += size
    return out


def _finding_blocks(view: View, ctx: Context, reasons: bool) -> list[dict[str, Any]]:
    f = view.finding
    name = escape(f.subject.name)
    team = f" ({escape(f.subject.team)})" if f.subject.team and f.subject.type != "team" else ""
    who = f"~{name}~ resolved" if view.status == "resolved" else f"*{name}*{team}"
    said = escape(f.summary or f.explanation)
    blocks = [_section(_clip(f"{who}: {said}", SECTION_LIMIT))]
    numbers = (
        f"{f.severity} · measured {format_value(f.value, f.unit, ctx.currency)} · "
        f"baseline {format_value(f.baseline, f.unit, ctx.currency)} · sample {f.sample_size:,}"
    )
    if reasons and view.reason:
        numbers += f" · {escape(view.reason)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(numbers, SECTION_LIMIT)}]})
    if f.samples and view.status != "resolved":
        lines = [_sample_line(s, ctx.currency) for s in f.samples[:SAMPLES_PER_FINDING]]
        if len(f.samples) > SAMPLES_PER_FINDING:
            lines.append(f"…and {len(f.samples) - SAMPLES_PER_FINDING} more")
        blocks.append(_section(_clip("\n".join(lines), SECTION_LIMIT)))
    return blocks


def _sample_line(sample: SampleRecord, currency: str) -> str:
    name = escape(sample.name) or escape(sample.id)
    url = sample.url if sample.url and _URL.fullmatch(sample.url) else None
    label = f"<{escape(url)}|{name}>" if url else name
    parts = [label]
    if sample.amount is not None:
        parts.append(format_value(sample.amount, "money", currency))
    if sample.stage:
        parts.append(escape(sample.stage))
    if sample.days is not None:
        parts.append(format_value(sample.days, "days", currency))
    if sample.owner:
        parts.append(escape(sample.owner))
    if sample.note:
        parts.append(escape(sample.note))
    return "• " + " · ".join(parts)


def silence_command(rule_id: str, subject: str | None = None) -> str:
    """The exact command that mutes this rule (and subject)."""
    quoted = "'" + subject.replace("'", "'\\''") + "'" if subject else ""
    one = f" --subject {quoted}" if subject else ""
    return f"python service.py silence add --rule {rule_id}{one} --for 7d --comment 'why'"


def _footer(ctx: Context, views: Sequence[View]) -> dict[str, Any]:
    when = ctx.as_of.strftime("%Y-%m-%d %H:%M UTC")
    cmd = silence_command(ctx.rule_id, views[0].finding.subject.id if len(views) == 1 else None)
    one = "" if len(views) == 1 else " (one subject: add `--subject ID`)"
    text = f"rule `{escape(ctx.rule_id)}` · as of {when} · mute: `{escape(cmd)}`{one}"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT)}]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, HEADER_LIMIT), "emoji": True}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text or " "}}


def _clip(text: str, limit: int) -> str:
    """Cut to ``limit`` characters without splitting an escape entity or a link."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp, semi = cut.rfind("&"), cut.rfind(";")
    if amp > semi:
        cut = cut[:amp]
    lt, gt = cut.rfind("<"), cut.rfind(">")
    if lt > gt:
        cut = cut[:lt]
    return cut + "…"


def _text_size(value: Any) -> int:
    if isinstance(value, dict):
        return sum(len(v) if k == "text" and isinstance(v, str) else _text_size(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_text_size(v) for v in value)
    return 0


def redact(payload: Any, secrets: Iterable[str]) -> Any:
    """The payload with every secret (raw or escaped) replaced by ``***`` in every string."""
    forms = sorted({form for s in secrets if s for form in (s, escape(s))}, key=len, reverse=True)
    if not forms:
        return payload
    pattern = re.compile("|".join(re.escape(f) for f in forms))

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub("***", value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(payload)
