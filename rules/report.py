"""Readable terminal output for ``check --dry-run`` and ``rules backtest`` (rich tables).

Findings are shown with the numbers an ops lead needs to judge them — the value, what it
was compared with and how many records it rests on — and every rule that judged nothing
says so ("not evaluated", or its error), so an empty table is never ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rules.findings import Evaluation, Finding, SampleRecord

SEVERITY_STYLE = {"critical": "bold red", "warn": "yellow"}
MAX_SUBJECTS = 6  # names shown per backtest row before "+N more"
MAX_SAMPLES = 3  # worst records shown per finding (the alert carries them all)


def format_value(value: float, unit: str, currency: str) -> str:
    """A measured value or baseline in the finding's unit, as a person reads it."""
    if unit == "share":
        return f"{value:.0%}"
    if unit == "money":
        return f"{value:,.0f} {currency}"
    if unit == "days":
        return f"{value:.1f} d"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit == "zscore":
        return f"z {value:+.1f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def console() -> Console:
    """stdout; wide when not a terminal, so piped output keeps one finding per line."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=160)
    return out


def print_evaluations(
    out: Console, evaluations: Sequence[Evaluation], as_of: datetime, currency: str, timezone: str
) -> None:
    """Every rule's findings as a table, then what was not evaluated and what failed."""
    local = as_of.astimezone(ZoneInfo(timezone))
    findings = [f for e in evaluations for f in e.findings]
    out.print(f"as of {local:%Y-%m-%d %H:%M %Z}: {len(evaluations)} rule(s) evaluated, {len(findings)} finding(s)")
    if findings:
        out.print(_findings_table(findings, currency))
    notes = [n for e in evaluations for n in e.notes]
    if notes:
        out.print(f"not evaluated ({len(notes)}):")
        for note in notes:
            team = f" ({note.subject.team})" if note.subject.team else ""
            out.print(f"  {note.rule_id}: {note.subject.type} {note.subject.name}{team}: {note.reason}", markup=False)
    for evaluation in evaluations:
        if evaluation.error:
            out.print(Text(f"rule {evaluation.rule_id} failed: {evaluation.error}", style="red"))


def _findings_table(findings: Sequence[Finding], currency: str) -> Table:
    table = Table(show_lines=False, header_style="bold")
    for name, justify in (
        ("rule", "left"),
        ("severity", "left"),
        ("subject", "left"),
        ("team", "left"),
        ("value", "right"),
        ("baseline", "right"),
        ("n", "right"),
        ("explanation", "left"),
        ("worst records", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for f in sorted(findings, key=lambda f: (f.rule_id, f.severity != "critical", f.subject.name)):
        table.add_row(
            f.rule_id,
            Text(f.severity, style=SEVERITY_STYLE[f.severity]),
            Text(f"{f.subject.name} ({f.subject.type})"),
            Text(f.subject.team or ""),
            format_value(f.value, f.unit, currency),
            format_value(f.baseline, f.unit, currency),
            str(f.sample_size),
            Text(f.summary or f.explanation),
            Text("\n".join(_sample(s, currency) for s in f.samples[:MAX_SAMPLES])),
        )
    return table


def _sample(record: SampleRecord, currency: str) -> str:
    facts = [format_value(record.amount, "money", currency)] if record.amount is not None else []
    facts += [f"{record.days:.0f} d"] if record.days is not None else []
    facts += [record.note] if record.note else []
    return f"{record.name} ({', '.join(facts)})" if facts else record.name


def print_backtest(
    out: Console, rule_ids: Sequence[str], runs: Sequence[tuple[datetime, Sequence[Evaluation]]], timezone: str
) -> None:
    """Per rule: at each instant how many findings it raised and for whom, then its noise in one line."""
    tz = ZoneInfo(timezone)
    for rule_id in rule_ids:
        table = Table(title=f"rule {rule_id}", title_justify="left", header_style="bold")
        table.add_column("as of")
        table.add_column("findings", justify="right")
        table.add_column("critical", justify="right")
        table.add_column("subjects", overflow="fold")
        fired = 0
        subjects: set[str] = set()
        total = 0
        for at, evaluations in runs:
            evaluation = next((e for e in evaluations if e.rule_id == rule_id), None)
            if evaluation is None:
                continue
            if evaluation.error:
                table.add_row(f"{at.astimezone(tz):%Y-%m-%d %H:%M}", "-", "-", Text(f"failed: {evaluation.error}"))
                continue
            names = [f.subject.name for f in evaluation.findings]
            fired += bool(names)
            total += len(names)
            subjects.update(names)
            more = len(names) - MAX_SUBJECTS
            shown = ", ".join(names[:MAX_SUBJECTS]) + (f", +{more} more" if more > 0 else "")
            critical = sum(f.severity == "critical" for f in evaluation.findings)
            table.add_row(f"{at.astimezone(tz):%Y-%m-%d %H:%M}", str(len(names)), str(critical), Text(shown))
        out.print(table)
        out.print(
            f"  {rule_id}: fired at {fired} of {len(runs)} instant(s), {total} finding(s), "
            f"{len(subjects)} distinct subject(s)\n",
            markup=False,
        )
