"""The company's exchange rates, held where real CRMs hold them (none in salespulse's settings).

Both CRMs keep USD as the corporate (company) currency and know every selling currency:

- Salesforce: ``CurrencyType`` rows, ``ConversionRate`` = units of the currency per one USD
  (six decimals, as Salesforce keeps them). With ``dated`` (advanced currency management),
  also ``DatedConversionRate`` rows per quarter of the history, drifting a few per cent
  around the current rate; the first range starts 0001-01-01 and the last ends 9999-12-31,
  as Salesforce's do. A deal converts at the range holding its close date.
- HubSpot: the company currency, and one exchange rate per other currency,
  ``conversionRate`` = USD per one unit, effective since the history began.

Store rows (table ``currencies``): ``start_date`` is null for current rates.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from sandbox.company_catalog import (
    CURRENCIES,
    DAY_MS,
    HUBSPOT,
    SALESFORCE,
    Window,
    iso_ms,
    next_quarter,
    quarter_start,
    to_date,
)
from sandbox.store import Store

CORPORATE = "USD"
SF_CURRENCY_PREFIX, SF_DATED_PREFIX = "01L", "04w"
HS_RATE_OFFSET = 40_000_000_000
FIRST_DAY, LAST_DAY = "0001-01-01", "9999-12-31"


def sf_rate(usd_per_unit: float) -> str:
    """Salesforce's ConversionRate for a currency: units per one USD, six decimals."""
    return f"{1 / usd_per_unit:.6f}"


def write_rates(store: Store, window: Window, *, dated: bool) -> dict[str, Any]:
    """Store both CRMs' rates; return what the ground truth records about them."""
    stamp = iso_ms(window.start_day * DAY_MS)
    rows: list[dict[str, Any]] = []

    def add(crm: str, ident: str, code: str, rate: str, corporate: bool, start: str | None, end: str | None) -> None:
        rows.append(
            {
                "crm": crm,
                "id": ident,
                "seq": len(rows) + 1,
                "iso_code": code,
                "conversion_rate": rate,
                "is_corporate": int(corporate),
                "is_active": 1,
                "start_date": start,
                "next_start_date": end,
                "created_at": stamp,
                "modified_at": stamp,
            }
        )

    for n, cur in enumerate(CURRENCIES, 1):
        add(
            SALESFORCE,
            f"{SF_CURRENCY_PREFIX}{n:012d}AAA",
            cur.code,
            sf_rate(cur.usd_per_unit),
            cur.code == CORPORATE,
            None,
            None,
        )
    dated_truth = []
    if dated:
        quarters = _quarters(to_date(window.start_day), next_quarter(window.quarter_start))
        n = 0
        for k, (start, end) in enumerate(quarters):
            for cur in CURRENCIES:
                n += 1
                drift = 1.0 if cur.code == CORPORATE else 1 + 0.04 * math.sin(k + len(cur.code) * ord(cur.code[0]))
                rate = sf_rate(cur.usd_per_unit * drift)
                first = FIRST_DAY if k == 0 else start.isoformat()
                last = LAST_DAY if k == len(quarters) - 1 else end.isoformat()
                add(SALESFORCE, f"{SF_DATED_PREFIX}{n:012d}AAA", cur.code, rate, cur.code == CORPORATE, first, last)
                dated_truth.append({"iso_code": cur.code, "conversion_rate": rate, "start": first, "next_start": last})
    add(HUBSPOT, str(HS_RATE_OFFSET), CORPORATE, "1", True, None, None)
    for n, cur in enumerate(CURRENCIES[1:], 1):
        add(
            HUBSPOT,
            str(HS_RATE_OFFSET + n),
            cur.code,
            str(cur.usd_per_unit),
            False,
            to_date(window.start_day).isoformat(),
            None,
        )
    store.insert_many("currencies", rows)
    return {
        "corporate": CORPORATE,
        "salesforce": {c.code: sf_rate(c.usd_per_unit) for c in CURRENCIES},
        "salesforce_dated": dated_truth,
        "hubspot": {c.code: str(c.usd_per_unit) for c in CURRENCIES[1:]},
    }


def _quarters(first: date, last_start: date) -> list[tuple[date, date]]:
    found = []
    start = quarter_start(first)
    while start <= last_start:
        found.append((start, next_quarter(start)))
        start = next_quarter(start)
    return found
