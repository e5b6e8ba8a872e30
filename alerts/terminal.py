"""Block Kit messages drawn on a terminal with rich: ``check --dry-run`` and the demo show what Slack would.

mrkdwn is turned back into what a reader sees (``*bold*``, links ``<url|label>``, escapes), and
every string is printed as text, never interpreted as rich markup, so CRM text stays inert here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console, Group
from rich.emoji import Emoji
from rich.panel import Panel
from rich.rule import Rule
from rich.text import Text

_LINK = re.compile(r"<([^<>|]+)\|([^<>]*)>|<([^<>|]+)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")


def mrkdwn(text: str, style: str = "") -> Text:
    """Slack mrkdwn as a rich Text: links shown as ``label (url)``, *bold* bold, escapes undone."""
    out = Text(style=style)
    pos = 0
    for match in _LINK.finditer(text):
        _bold_into(out, _unescape(text[pos : match.start()]))
        url, label, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None:
            out.append(_unescape(bare), style="cyan")
        else:
            out.append(_unescape(label), style="underline cyan")
            out.append(f" ({_unescape(url)})", style="dim")
        pos = match.end()
    _bold_into(out, _unescape(text[pos:]))
    return out


def _bold_into(out: Text, text: str) -> None:
    pos = 0
    for match in _BOLD.finditer(text):
        out.append(text[pos : match.start()])
        out.append(match.group(1), style="bold")
        pos = match.end()
    out.append(text[pos:])


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_blocks(blocks: Iterable[Mapping[str, Any]]) -> Group:
    parts: list[Any] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(Text(Emoji.replace(str(block["text"]["text"])), style="bold"))
        elif kind == "section":
            if block.get("text"):
                parts.append(mrkdwn(str(block["text"]["text"])))
            for item in block.get("fields") or []:
                parts.append(mrkdwn(str(item.get("text", ""))))
        elif kind == "context":
            line = Text(style="dim")
            for i, element in enumerate(block.get("elements") or []):
                if i:
                    line.append(" · ")
                line.append_text(mrkdwn(str(element.get("text", element.get("alt_text", "")))))
            parts.append(line)
        elif kind == "divider":
            parts.append(Rule(style="dim"))
        elif kind == "image":
            parts.append(Text(f"[image: {block.get('alt_text', '')}]", style="dim"))
    return Group(*parts)


def render_message(message: Mapping[str, Any], *, channel: str, note: str = "") -> Panel:
    """One message as a panel titled with its channel (and, e.g., 'reply in thread')."""
    body = render_blocks(message.get("blocks") or []) if message.get("blocks") else mrkdwn(str(message["text"]))
    title = Text(channel, style="bold magenta")
    if note:
        title.append(f"  {note}", style="dim")
    return Panel(body, title=title, title_align="left", border_style="magenta")


def print_messages(messages: Iterable[tuple[str, Mapping[str, Any], str]], console: Console | None = None) -> int:
    """Print ``(channel, message, note)`` triples; the number printed."""
    console = console or Console()
    n = 0
    for channel, message, note in messages:
        console.print(render_message(message, channel=channel, note=note))
        n += 1
    return n
