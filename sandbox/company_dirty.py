"""Dirty records: what real CRMs hold and a sync must survive.

Run after generation, on a ``dirty_rate`` share of each CRM's deals and leads (at least one
of every kind when the rate is above zero). Each is rewritten in place without moving its
modification stamp: it was born dirty.

Two families, told apart by ``valid`` in the ground truth:

- invalid (the sync must quarantine them, with a reason): missing or absurd amounts,
  unknown stages, owners that do not exist, close dates that are not dates. They are put
  only on closed deals that are not won this quarter, and on leads older than 40 days, so
  quarantining them leaves every planted problem as measured;
- valid (they must sync, and render in Slack unharmed): names over 1,000 characters,
  Arabic, Chinese and emoji names, and names full of Slack markup such as
  ``<!channel> & <b>``. The first Slack-markup deal of each CRM is a planted no-activity
  deal when there is one, so its alert carries the markup.
"""

from __future__ import annotations

from typing import Any

from sandbox.company_catalog import CRMS, DAY_MS, SALESFORCE, Rng, Window, iso_ms, record_id
from sandbox.store import Store

DEAL_KINDS = (
    ("missing_amount", False),
    ("unknown_stage", False),
    ("unknown_owner", False),
    ("malformed_date", False),
    ("absurd_amount", False),
    ("long_name", True),
    ("non_latin_name", True),
    ("slack_special_name", True),
)
LEAD_KINDS = (
    ("unknown_owner", False),
    ("long_name", True),
    ("non_latin_name", True),
    ("slack_special_name", True),
)
MALFORMED_DATES = ("2025-13-45", "not a date", "2024-02-30")
ABSURD_AMOUNTS = ("1e15", "-25000")
NON_LATIN_DEALS = ("شركة النور للتجارة - ترخيص المنصة", "北京星辰科技有限公司 - 平台许可", "🚀 Rocket Deal 🎉 Ünïcødé")
NON_LATIN_PEOPLE = (("محمد", "العلي"), ("小明", "王"), ("🦄", "Unicorn 🌈"))
SLACK_SPECIAL = (
    "<!channel> & <b>",
    "<!here> Q3 deal for <@U024BE7LH> & <https://example.com|click me>",
    "*Bold* _deal_ ~strike~ `code` > quote & <b>tags</b>",
)
LONG_NAME_FILLER = "Multi-year enterprise agreement with extended support and onboarding "
MAX_TRIES = 10_000


def write_dirty(store: Store, seed: int, rate: float, window: Window, featured: dict[str, str]) -> list[dict[str, Any]]:
    """Make records dirty; return the ground-truth entries. ``featured``: crm -> a deal to give Slack markup."""
    if rate <= 0:
        return []
    rng = Rng(f"{seed}:dirty")
    found: list[dict[str, Any]] = []
    made: dict[tuple[str, str], int] = {}  # per table and kind: the variants (Arabic, Chinese...) take turns
    for crm in CRMS:
        for table, kinds in (("deals", DEAL_KINDS), ("leads", LEAD_KINDS)):
            rows = store.count(table, crm)
            wanted = min(rows // 2, max(len(kinds), round(rate * rows)))
            picker = _Picker(store, table, crm, rng, window)
            for i in range(wanted):
                kind, valid = kinds[i % len(kinds)]
                first_markup_deal = table == "deals" and kind == "slack_special_name" and i < len(kinds)
                row_id = picker.pick(valid, featured.get(crm) if first_markup_deal else None)
                if row_id is None:
                    break
                n = made[(table, kind)] = made.get((table, kind), -1) + 1
                found.append(_apply(store, table, crm, row_id, kind, valid, n))
    return found


class _Picker:
    """Draws distinct random rows by seq, keeping invalid kinds away from what planted problems measure."""

    def __init__(self, store: Store, table: str, crm: str, rng: Rng, window: Window) -> None:
        self.conn = store.connect()
        self.table, self.crm, self.rng = table, crm, rng
        self.top = store.next_seq(table, crm) - 1
        self.used: set[str] = set()
        self.quarter_start = iso_ms(window.quarter_start_ms)
        self.old_lead = iso_ms(window.end_ms - 40 * DAY_MS)

    def pick(self, valid: bool, prefer: str | None) -> str | None:
        if prefer is not None and prefer not in self.used:
            self.used.add(prefer)
            return prefer
        for _ in range(MAX_TRIES):
            seq = self.rng.randint(1, self.top)
            row = self.conn.execute(f"SELECT * FROM {self.table} WHERE crm = ? AND seq = ?", (self.crm, seq)).fetchone()
            if row is None or row["id"] in self.used or not (valid or self._harmless(row)):
                continue
            self.used.add(row["id"])
            return row["id"]
        return None

    def _harmless(self, row: Any) -> bool:
        if self.table == "leads":
            return row["assigned_at"] < self.old_lead
        return bool(row["is_closed"]) and not (row["is_won"] and row["closed_at"] >= self.quarter_start)


def _apply(store: Store, table: str, crm: str, row_id: str, kind: str, valid: bool, n: int) -> dict[str, Any]:
    conn = store.connect()
    current = conn.execute(f"SELECT * FROM {table} WHERE crm = ? AND id = ?", (crm, row_id)).fetchone()
    changes = _changes(table, crm, kind, n, current)
    sets = ", ".join(f"{column} = ?" for column in changes)
    conn.execute(f"UPDATE {table} SET {sets} WHERE crm = ? AND id = ?", (*changes.values(), crm, row_id))
    entry: dict[str, Any] = {"crm": crm, "table": table, "id": row_id, "kind": kind, "valid": valid}
    column, value = next(iter(changes.items()))
    entry["field"] = column
    if kind == "long_name":
        entry["length"] = len(value)
    else:
        entry["value"] = value
    return entry


def _changes(table: str, crm: str, kind: str, n: int, current: Any) -> dict[str, Any]:
    if kind == "missing_amount":
        return {"amount": None}
    if kind == "absurd_amount":
        return {"amount": ABSURD_AMOUNTS[n % len(ABSURD_AMOUNTS)]}
    if kind == "malformed_date":
        return {"close_date": MALFORMED_DATES[n % len(MALFORMED_DATES)]}
    if kind == "unknown_stage":
        return {"stage_id": "Discovery (retired)" if crm == SALESFORCE else "retiredstage"}
    if kind == "unknown_owner":
        # Seqs far above any real user's: these ids look right and exist nowhere.
        return {"owner_id": record_id(crm, "users", 89_000_000 + n)}
    name_column = "name" if table == "deals" else "last_name"
    if kind == "long_name":
        base = current[name_column] + " - "
        return {name_column: base + LONG_NAME_FILLER * (1 + 1000 // len(LONG_NAME_FILLER) + n % 3)}
    if kind == "non_latin_name":
        if table == "deals":
            return {"name": NON_LATIN_DEALS[n % len(NON_LATIN_DEALS)]}
        first, last = NON_LATIN_PEOPLE[n % len(NON_LATIN_PEOPLE)]
        return {"last_name": last, "first_name": first}
    if kind == "slack_special_name":
        return {"name" if table == "deals" else "company": SLACK_SPECIAL[n % len(SLACK_SPECIAL)]}
    raise ValueError(f"unknown dirty kind {kind!r}")
