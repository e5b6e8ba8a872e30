"""Which rate converts an amount: settings, then the record's CRM (dated, then current),
then another CRM; through the CRM's corporate currency when it is not the reporting one."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import SkippableError
from models.settings import CompanySettings
from sync.currency import CrmRate, RateBook


def sf(currency: str, per_usd: str, *, dated: tuple[str, str] | None = None) -> CrmRate:
    """A Salesforce rate as the connector stores it: USD per one unit (1 / ConversionRate)."""
    start, end = (date.fromisoformat(d) for d in dated) if dated else (None, None)
    return CrmRate("salesforce", currency, "USD", Decimal(1) / Decimal(per_usd), start, end, dated is not None)


def hs(currency: str, usd_per_unit: str) -> CrmRate:
    return CrmRate("hubspot", currency, "USD", Decimal(usd_per_unit), date(2024, 1, 1), None, False)


RATES = [
    sf("USD", "1"),
    sf("EUR", "0.8"),
    sf("GBP", "0.5"),
    sf("EUR", "0.5", dated=("2026-01-01", "2026-04-01")),
    hs("EUR", "1.10"),
    hs("CHF", "1.20"),
]


@pytest.mark.parametrize(
    ("reporting", "overrides", "currency", "source", "on", "amount"),
    [
        ("USD", {}, "USD", "salesforce", None, "100.00"),
        ("USD", {}, "EUR", "salesforce", None, "125.00"),  # 100 / 0.8
        ("USD", {}, "EUR", "salesforce", date(2026, 2, 1), "200.00"),  # the dated rate in force
        ("USD", {}, "EUR", "salesforce", date(2026, 4, 1), "125.00"),  # NextStartDate is exclusive
        ("USD", {}, "EUR", "hubspot", date(2026, 2, 1), "110.00"),  # its own CRM first
        ("USD", {}, "CHF", "salesforce", None, "120.00"),  # another CRM's rate
        ("USD", {"EUR": Decimal("2")}, "EUR", "salesforce", date(2026, 2, 1), "200.00"),
        ("USD", {"EUR": Decimal("3")}, "EUR", "hubspot", None, "300.00"),  # settings win
        ("EUR", {}, "GBP", "salesforce", None, "160.00"),  # through USD: 100 / 0.5 * 0.8
        ("EUR", {}, "USD", "salesforce", None, "80.00"),
        ("EUR", {"USD": Decimal("0.9")}, "GBP", "salesforce", None, "180.00"),  # settings rate for the corporate one
    ],
)
def test_the_rate_that_converts_an_amount(
    reporting: str, overrides: dict[str, Decimal], currency: str, source: str, on: date | None, amount: str
) -> None:
    book = RateBook(CompanySettings(reporting_currency=reporting, fx_rates=overrides), RATES)

    assert book.convert(Decimal(100), currency, source, on) == Decimal(amount)


def test_a_currency_without_any_rate_says_where_to_add_one() -> None:
    book = RateBook(CompanySettings(), RATES)

    with pytest.raises(SkippableError, match=r"no exchange rate for SEK.*\[company\.fx_rates\]"):
        book.convert(Decimal(1), "SEK", "salesforce", None)


@given(
    rates=st.lists(
        st.tuples(
            st.sampled_from(["EUR", "GBP", "JPY"]),
            st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=6),
            st.booleans(),
        ),
        max_size=6,
    ),
    overrides=st.dictionaries(
        st.sampled_from(["EUR", "GBP"]), st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10), places=4)
    ),
)
def test_segments_agree_with_lookups_and_the_fingerprint_follows_every_rate(
    rates: list[tuple[str, Decimal, bool]], overrides: dict[str, Decimal]
) -> None:
    rows = [
        sf(code, str(rate), dated=(f"202{n % 6}-01-01", f"202{n % 6}-07-01") if dated else None)
        for n, (code, rate, dated) in enumerate(rates)
    ]
    book = RateBook(CompanySettings(fx_rates=overrides), rows)
    for code in ("EUR", "GBP", "JPY"):
        for start, end, rate in book.segments(code, "salesforce"):
            for day in (start, end):
                if day is not None and (start is None or day >= start) and (end is None or day < end):
                    assert book.lookup(code, "salesforce", day) == rate
    changed = RateBook(CompanySettings(fx_rates={**overrides, "JPY": Decimal("0.5")}), rows)
    assert changed.fingerprint() != book.fingerprint()
    if rows:
        moved = [rows[0].__class__(**{**rows[0].__dict__, "base_per_unit": rows[0].base_per_unit * 2}), *rows[1:]]
        assert RateBook(CompanySettings(fx_rates=overrides), moved).fingerprint() != book.fingerprint()
