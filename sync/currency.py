"""Converting amounts to the reporting currency: the CRMs' own rates, overridden by settings.

A rate is data, not configuration: a multi-currency CRM already holds its rates
(Salesforce ``CurrencyType`` / ``DatedConversionRate``, HubSpot's exchange rates), the
sync stores them in ``exchange_rates``, and ``[company.fx_rates]`` only overrides. Which
rate converts an amount, in this order:

1. ``[company.fx_rates]`` (an admin's word wins over any CRM),
2. the record's own CRM: a dated rate in force on the record's date, else its current rate,
3. another synced CRM's rate (the same currency converts the same anywhere).

A currency with no rate anywhere is an error for that record (quarantine), never a
guess: a EUR deal silently counted as USD would skew every quota comparison.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise

from sqlalchemy import Connection, and_, func, select, update

from models.errors import SkippableError
from models.settings import CompanySettings
from models.tables import RATES_APPLIED, exchange_rates, opportunities, quotas, sync_state
from sync.writer import save_cursor

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.000000000001")


@dataclass(frozen=True)
class Rate:
    """Units of the reporting currency per one unit of a currency, and where that number came from."""

    value: Decimal
    origin: str  # settings | reporting currency | '<source> <object>'
    valid_from: date | None = None
    valid_to: date | None = None  # exclusive

    def applies_on(self, day: date) -> bool:
        return (self.valid_from is None or day >= self.valid_from) and (self.valid_to is None or day < self.valid_to)


@dataclass(frozen=True)
class CrmRate:
    """One stored ``exchange_rates`` row, as the book needs it."""

    source: str
    currency: str
    base_currency: str
    base_per_unit: Decimal
    valid_from: date | None
    valid_to: date | None
    is_dated: bool


def _origin(rate: CrmRate) -> str:
    kind = {"salesforce": ("CurrencyType", "DatedConversionRate")}.get(rate.source, ("exchange rate", "dated rate"))
    return f"{rate.source} {kind[rate.is_dated]}"


@dataclass
class RateBook:
    company: CompanySettings
    crm: list[CrmRate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._dated: dict[tuple[str, str], list[Rate]] = defaultdict(list)
        self._current: dict[tuple[str, str], Rate] = {}
        for row in self.crm:
            value = self._to_reporting(row)
            if value is None:
                continue
            rate = Rate(value, _origin(row), row.valid_from, row.valid_to)
            if row.is_dated:
                self._dated[(row.source, row.currency)].append(rate)
            else:
                self._current[(row.source, row.currency)] = rate
        self.sources = sorted({r.source for r in self.crm})

    @classmethod
    def load(cls, conn: Connection, company: CompanySettings) -> RateBook:
        e = exchange_rates
        rows = conn.execute(
            select(
                e.c.source,
                e.c.currency,
                e.c.base_currency,
                e.c.base_per_unit,
                e.c.valid_from,
                e.c.valid_to,
                e.c.is_dated,
            )
            .where(e.c.deleted_at.is_(None))
            .order_by(e.c.source, e.c.currency, e.c.valid_from)
        )
        return cls(company, [CrmRate(*r) for r in rows])

    # -- from the CRM's base currency to the reporting currency ------------------------------
    def _to_reporting(self, row: CrmRate) -> Decimal | None:
        """``row`` in reporting units: through the CRM's corporate currency when it is not the reporting one."""
        per_base = self._reporting_per_base(row)
        if per_base is None:
            return None
        return (Decimal(row.base_per_unit) * per_base).quantize(RATE_PLACES)

    def _reporting_per_base(self, row: CrmRate) -> Decimal | None:
        reporting = self.company.reporting_currency
        if row.base_currency == reporting:
            return Decimal(1)
        if row.base_currency in self.company.fx_rates:
            return self.company.fx_rates[row.base_currency]
        # The CRM's own rate for the reporting currency (dated for the same period when it has one).
        candidates = [
            r
            for r in self.crm
            if r.source == row.source and r.currency == reporting and r.base_currency == row.base_currency
        ]
        day = row.valid_from
        dated = [r for r in candidates if r.is_dated and day is not None and _covers(r, day)]
        current = [r for r in candidates if not r.is_dated]
        chosen = (dated or current or [None])[0]
        if chosen is None or not chosen.base_per_unit:
            return None
        return Decimal(1) / Decimal(chosen.base_per_unit)

    # -- lookups ----------------------------------------------------------------------------
    def lookup(self, currency: str, source: str | None, on: date | None) -> Rate | None:
        if currency == self.company.reporting_currency:
            return Rate(Decimal(1), "reporting currency")
        override = self.company.fx_rates.get(currency)
        if override is not None:
            return Rate(override, "settings [company.fx_rates]")
        order = [source] if source in self.sources else []
        order += [s for s in self.sources if s != source]
        for src in order:
            if on is not None:
                for rate in self._dated.get((src, currency), ()):
                    if rate.applies_on(on):
                        return rate
            current = self._current.get((src, currency))
            if current is not None:
                return current
        return None

    def convert(self, amount: Decimal, currency: str, source: str | None, on: date | None) -> Decimal:
        """``amount`` in the reporting currency, to the cent, or SkippableError saying where to add a rate."""
        rate = self.lookup(currency, source, on)
        if rate is None:
            where = f" (or add {currency} to {source}'s currencies)" if source else ""
            raise SkippableError(
                f"no exchange rate for {currency} in any synced CRM or in settings; add {currency} = <units of "
                f"{self.company.reporting_currency} per {currency}> under [company.fx_rates]{where}, "
                "and the next sync releases the record",
                currency=currency,
            )
        return (amount * rate.value).quantize(CENT, ROUND_HALF_UP)

    def has(self, currency: str) -> bool:
        return self.lookup(currency, None, None) is not None or any(cur == currency for _, cur in self._dated)

    def stored_rate(self, source: str, currency: str, valid_from: date | None, dated: bool) -> Rate | None:
        """The reporting-currency rate of one stored row (None while its base currency cannot be converted)."""
        own = self._dated.get((source, currency), []) if dated else [self._current.get((source, currency))]
        return next((r for r in own if r is not None and (not dated or r.valid_from == valid_from)), None)

    def fingerprint(self) -> str:
        """Changes whenever any conversion could: the reporting currency, a setting, a CRM rate."""
        parts = [self.company.reporting_currency]
        parts += [f"{k}={v}" for k, v in sorted(self.company.fx_rates.items())]
        parts += [
            f"{r.source}|{r.currency}|{r.base_currency}|{Decimal(r.base_per_unit):f}|{r.valid_from}|{r.valid_to}|{r.is_dated}"
            for r in sorted(self.crm, key=lambda r: (r.source, r.currency, str(r.valid_from), r.is_dated))
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    def segments(self, currency: str, source: str) -> list[tuple[date | None, date | None, Rate | None]]:
        """Date ranges [from, to) over which ``currency`` converts at one rate for ``source``'s dated records."""
        cuts = sorted(
            {
                day
                for (_, cur), rates in self._dated.items()
                if cur == currency
                for r in rates
                for day in (r.valid_from, r.valid_to)
                if day is not None
            }
        )
        bounds: list[date | None] = [None, *cuts, None]
        found = []
        for start, end in pairwise(bounds):
            if end == date.min:
                continue  # nothing comes before the first day (Salesforce's first range starts 0001-01-01)
            probe = start or (end - timedelta(days=1) if end else date.min)  # no cut at all: any day will do
            found.append((start, end, self.lookup(currency, source, probe)))
        return found


def _covers(rate: CrmRate, day: date) -> bool:
    return (rate.valid_from is None or day >= rate.valid_from) and (rate.valid_to is None or day < rate.valid_to)


def store_rates(conn: Connection, source: str, book: RateBook) -> None:
    """Write each of ``source``'s rows' rate in reporting units (for analysts; conversion uses the book)."""
    e = exchange_rates
    for rid, currency, valid_from, is_dated in conn.execute(
        select(e.c.id, e.c.currency, e.c.valid_from, e.c.is_dated).where(e.c.source == source)
    ).all():
        match = book.stored_rate(source, currency, valid_from, is_dated)
        conn.execute(update(e).where(e.c.id == rid).values(rate=match.value if match else None))


def reconvert(conn: Connection, source: str, book: RateBook, now: datetime, *, all_new: bool = False) -> int:
    """Re-convert ``source``'s stored amounts when the rates changed since they were converted.

    Cheap when nothing changed (one fingerprint compared); otherwise one UPDATE per
    currency and rate period, touching only rows whose converted amount differs (a scan of
    the table each: a million deals in a dozen rate periods take seconds, so it runs only
    when a rate changed). ``all_new``: every stored amount was converted with ``book`` in
    this sync (the source's first), so only the fingerprint is recorded.
    """
    fingerprint = book.fingerprint()
    applied = conn.execute(
        select(sync_state.c.cursor).where(sync_state.c.source == source, sync_state.c.stream == RATES_APPLIED)
    ).scalar_one_or_none()
    if applied == fingerprint:
        return 0
    if all_new and applied is None:
        save_cursor(conn, source, RATES_APPLIED, fingerprint, now)
        return 0
    changed = 0
    for table, day in ((opportunities, opportunities.c.close_date), (quotas, quotas.c.period_start)):
        currencies = conn.execute(select(table.c.currency).where(table.c.source == source).distinct()).scalars()
        for currency in [c for c in currencies if c]:
            periods = [
                (day >= s if s else None, day < e if e else None, r) for s, e, r in book.segments(currency, source)
            ]
            periods.append((day.is_(None), None, book.lookup(currency, source, None)))
            for after, before, rate in periods:
                if rate is None:
                    continue
                converted = func.round(table.c.amount * rate.value, 2)
                where = [table.c.source == source, table.c.currency == currency, table.c.amount.is_not(None)]
                where += [c for c in (after, before) if c is not None]
                if after is None and before is None:
                    where.append(day.is_not(None))
                where.append(table.c.amount_reporting.is_(None) | (table.c.amount_reporting != converted))
                changed += conn.execute(update(table).where(and_(*where)).values(amount_reporting=converted)).rowcount
    save_cursor(conn, source, RATES_APPLIED, fingerprint, now)
    return changed
