"""The admins' quota CSV: parse, validate against the warehouse, store.

The file is the whole truth for ``source = 'file'`` quotas: loading it replaces every
file quota in one transaction, so a line removed from the file disappears from the
warehouse, and a file with any error changes nothing. Every problem is reported with its
line number, all at once, so an admin fixes the file in one pass.

The file wins over the CRM: a Salesforce quota of a rep whose file quota overlaps its
period is kept but marked ``is_effective = false``; an optional ``hired_on`` column gives
a rep's start date (for ramp) over the CRM's. :func:`apply_file_precedence` settles both,
after a load and after every sync (a later CRM quota or rep change must not win).

The CRMs know nothing of how many leads a rep can take or of leave, so the file also carries
them, for ``lead_distribution``: optional ``lead_capacity`` (a number, 1 = a full share) and
``leave_from`` / ``leave_until`` (inclusive; an empty end is an open-ended leave). Like
``hired_on`` they are facts about the rep, so every line of one rep that gives them must agree.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path

from sqlalchemy import Connection, delete, exists, func, insert, select, update

from models.errors import ConfigError
from models.records import MAX_AMOUNT
from models.settings import CompanySettings
from models.tables import quotas, reps
from sync.currency import RateBook

REQUIRED = ("period_start", "period_end", "amount", "currency")


@dataclass(frozen=True)
class QuotaLine:
    line: int
    rep_id: str  # warehouse id
    period_start: date
    period_end: date
    amount: Decimal
    currency: str
    hired_on: date | None = None
    lead_capacity: float | None = None
    leave_from: date | None = None
    leave_until: date | None = None

    def rep_facts(self) -> dict[str, object]:
        """The per-rep columns this line gives (the others are empty on it)."""
        facts = {"hired_on": self.hired_on, "lead_capacity": self.lead_capacity}
        if self.leave_from is not None:
            facts["leave"] = (self.leave_from, self.leave_until)
        return {k: v for k, v in facts.items() if v is not None}


class QuotaFileError(ConfigError):
    """One or more lines of the quota file are wrong; ``problems`` lists (line, message)."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]) -> None:
        first_line, first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s): " if len(problems) > 1 else ""
        if more:
            more += "; ".join(f"line {n}: {m}" for n, m in problems[1:6]) + ")"
        super().__init__(first + more, source=str(path), line=first_line)
        self.problems = problems


def parse_quota_file(
    path: Path, rep_index: dict[str, str], company: CompanySettings, rates: RateBook | None = None
) -> list[QuotaLine]:
    """Validate every line; ``rep_index`` maps lower-case email, CRM id and warehouse id to warehouse id.

    ``rates``: the warehouse's exchange rates (the CRMs' and settings'); settings alone when None.
    """
    rates = rates or RateBook(company)
    problems: list[tuple[int, str]] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read the quota file: {exc.strerror}", source=str(path)) from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        rep_column = "rep_email" if "rep_email" in header else "rep_id" if "rep_id" in header else None
        missing = [c for c in REQUIRED if c not in header]
        if rep_column is None or missing:
            need = ["rep_email (or rep_id)"] if rep_column is None else []
            raise ConfigError(
                f"header is missing {', '.join(need + missing)}; expected "
                "rep_email,period_start,period_end,amount,currency",
                source=str(path),
                line=1,
            )
        lines: list[QuotaLine] = []
        for row in reader:
            number = reader.line_num
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue
            parsed = _parse_row(row, rep_column, number, rep_index, rates, problems)
            if parsed is not None:
                lines.append(parsed)
    problems.extend(_overlaps(lines))
    problems.extend(_rep_facts_disagree(lines))
    if problems:
        raise QuotaFileError(path, sorted(problems))
    return lines


def _parse_row(
    row: dict[str, str],
    rep_column: str,
    number: int,
    rep_index: dict[str, str],
    rates: RateBook,
    problems: list[tuple[int, str]],
) -> QuotaLine | None:
    before = len(problems)
    who = row.get(rep_column, "")
    rep_id = rep_index.get(who.lower() if rep_column == "rep_email" else who)
    if not who:
        problems.append((number, f"{rep_column} is empty"))
    elif rep_id is None:
        problems.append((number, f"unknown rep {who!r}: no synced rep has this {rep_column.removeprefix('rep_')}"))
    start = _date(row.get("period_start", ""), "period_start", number, problems)
    end = _date(row.get("period_end", ""), "period_end", number, problems)
    hired = row.get("hired_on", "")
    hired_on = _date(hired, "hired_on", number, problems) if hired else None
    if start and end and end < start:
        problems.append((number, f"period_end {end} is before period_start {start}"))
    capacity = _capacity(row.get("lead_capacity", ""), number, problems)
    leave_from, leave_until = _leave(row.get("leave_from", ""), row.get("leave_until", ""), number, problems)
    amount = None
    try:
        amount = Decimal(row.get("amount", ""))
        if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
            problems.append((number, f"amount {row['amount']!r} must be a number from 0 to {MAX_AMOUNT:,}"))
    except InvalidOperation:
        problems.append((number, f"amount {row.get('amount', '')!r} is not a number (use digits and a '.')"))
    currency = row.get("currency", "").upper()
    if not rates.has(currency):
        problems.append(
            (
                number,
                f"currency {currency!r} has no rate in [company.fx_rates] nor in any synced CRM (reporting "
                f"currency is {rates.company.reporting_currency})",
            )
        )
    if len(problems) > before:
        return None
    assert rep_id is not None
    assert start is not None
    assert end is not None
    assert amount is not None
    return QuotaLine(
        number,
        rep_id,
        start,
        end,
        amount.quantize(Decimal("0.01")),
        currency,
        hired_on,
        capacity,
        leave_from,
        leave_until,
    )


MAX_CAPACITY = 100.0


def _capacity(text: str, number: int, problems: list[tuple[int, str]]) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0 or value > MAX_CAPACITY:
        problems.append(
            (number, f"lead_capacity {text!r} must be a number from 0 to {MAX_CAPACITY:g} (1 = a full share of leads)")
        )
        return None
    return value


def _leave(first: str, last: str, number: int, problems: list[tuple[int, str]]) -> tuple[date | None, date | None]:
    if not first:
        if last:
            problems.append((number, f"leave_until {last!r} without leave_from; give the leave's first day too"))
        return None, None
    start = _date(first, "leave_from", number, problems)
    end = _date(last, "leave_until", number, problems) if last else None
    if start and end and end < start:
        problems.append((number, f"leave_until {end} is before leave_from {start}"))
    return start, end


def _date(text: str, column: str, number: int, problems: list[tuple[int, str]]) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append((number, f"{column} {text!r} is not a date; expected YYYY-MM-DD"))
        return None


def _overlaps(lines: list[QuotaLine]) -> list[tuple[int, str]]:
    by_rep: dict[str, list[QuotaLine]] = defaultdict(list)
    for q in lines:
        by_rep[q.rep_id].append(q)
    found = []
    for rep_lines in by_rep.values():
        rep_lines.sort(key=lambda q: (q.period_start, q.period_end))
        for prev, cur in pairwise(rep_lines):
            if cur.period_start <= prev.period_end:
                found.append(
                    (
                        cur.line,
                        f"period {cur.period_start}..{cur.period_end} overlaps line {prev.line} "
                        f"({prev.period_start}..{prev.period_end}) for the same rep",
                    )
                )
    return found


def _rep_facts_disagree(lines: list[QuotaLine]) -> list[tuple[int, str]]:
    """hired_on, lead_capacity and the leave are the rep's: two lines of a rep must not differ."""
    first: dict[tuple[str, str], QuotaLine] = {}
    found = []
    for q in lines:
        for fact, value in q.rep_facts().items():
            seen = first.setdefault((q.rep_id, fact), q)
            if seen.rep_facts()[fact] != value:
                found.append(
                    (q.line, f"{fact} {_show(value)} differs from line {seen.line} ({_show(seen.rep_facts()[fact])}) "
                             "for the same rep")
                )  # fmt: skip
    return found


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return f"{value[0]}..{value[1] or ''}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def rep_index(conn: Connection) -> dict[str, str]:
    """Every way a quota file may name a rep, mapped to the rep's warehouse id."""
    index: dict[str, str] = {}
    for rid, external, email in conn.execute(
        select(reps.c.id, reps.c.external_id, reps.c.email).where(reps.c.deleted_at.is_(None))
    ):
        index[rid] = rid
        index[external] = rid
        if email:
            index[email.lower()] = rid
    return index


def load_quota_file(conn: Connection, path: Path, company: CompanySettings, now: datetime) -> int:
    """Replace the file quotas with the file's content, in the caller's transaction."""
    rates = RateBook.load(conn, company)
    lines = parse_quota_file(path, rep_index(conn), company, rates)
    conn.execute(delete(quotas).where(quotas.c.source == "file"))
    if lines:
        conn.execute(
            insert(quotas),
            [
                {
                    "source": "file",
                    "external_id": None,
                    "rep_id": q.rep_id,
                    "period_start": q.period_start,
                    "period_end": q.period_end,
                    "amount": q.amount,
                    "currency": q.currency,
                    "amount_reporting": rates.convert(q.amount, q.currency, None, q.period_start),
                    "synced_at": now,
                }
                for q in lines
            ],
        )
    conn.execute(update(reps).values(hired_on_file=None, lead_capacity=None, leave_from=None, leave_until=None))
    facts: dict[str, dict[str, object]] = defaultdict(dict)
    for q in lines:
        facts[q.rep_id].update(q.rep_facts())
    for rep_id, given in facts.items():
        leave = given.get("leave", (None, None))
        values = {"hired_on_file": given.get("hired_on"), "lead_capacity": given.get("lead_capacity")}
        conn.execute(
            update(reps).where(reps.c.id == rep_id).values(**values, leave_from=leave[0], leave_until=leave[1])
        )
    apply_file_precedence(conn)
    return len(lines)


def apply_file_precedence(conn: Connection) -> None:
    """The file wins: CRM quotas overlapped by a file quota of the same rep stop being effective,
    and a rep's hired_on is the file's when it gives one."""
    file_quota = quotas.alias("file_quota")
    overlapped = exists().where(
        file_quota.c.source == "file",
        file_quota.c.rep_id == quotas.c.rep_id,
        file_quota.c.period_start <= quotas.c.period_end,
        file_quota.c.period_end >= quotas.c.period_start,
    )
    conn.execute(update(quotas).where(quotas.c.source != "file").values(is_effective=~overlapped))
    conn.execute(update(quotas).where(quotas.c.source == "file").values(is_effective=True))
    conn.execute(update(reps).values(hired_on=func.coalesce(reps.c.hired_on_file, reps.c.hired_on_crm)))
