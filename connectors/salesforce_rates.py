"""Salesforce's exchange rates, so a multi-currency org's deals convert at the org's own rates.

``CurrencyType`` holds each active currency's ``ConversionRate`` (units of that currency
per one unit of the corporate currency, ``IsCorporate``); with advanced currency
management, ``DatedConversionRate`` holds rates by period (``StartDate`` inclusive,
``NextStartDate`` exclusive), which apply to opportunities by close date. Both are small
and have no ``IsDeleted``: the stream reads them whole every run, and a rate that
disappeared is marked deleted.

A single-currency org has neither object (the query answers ``INVALID_TYPE``): the stream
yields nothing and amounts are in the org's one currency, as before. An org without
advanced currency management may lack ``DatedConversionRate`` alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.base import Item, StreamContext
from connectors.errors import StreamFailed
from connectors.salesforce_streams import SalesforceStream
from models.records import ExchangeRateRecord

log = logging.getLogger("salespulse.connectors.salesforce")

CURRENT = "SELECT Id, IsoCode, ConversionRate, IsCorporate, IsActive, SystemModstamp FROM CurrencyType"
DATED = "SELECT Id, IsoCode, ConversionRate, StartDate, NextStartDate, SystemModstamp FROM DatedConversionRate"


class ExchangeRatesStream(SalesforceStream):
    name = "exchange_rates"
    sobject = "CurrencyType"
    record_model = ExchangeRateRecord
    deletable = False
    reads_whole = True
    fields = ("Id", "IsoCode", "ConversionRate", "IsCorporate", "IsActive")

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:  # noqa: ARG002 - always a full read
        current = self._read(CURRENT, "CurrencyType")
        if current is None:
            log.info("CurrencyType is not available: a single-currency org, no exchange rates to read")
            return
        corporate = next((r.get("IsoCode") for r in current if r.get("IsCorporate")), None)
        dated = self._read(DATED, "DatedConversionRate") or []
        items = [self._rate(raw, corporate) for raw in [*current, *dated]]
        items.sort(key=lambda i: getattr(i, "updated_at", None) or datetime.min.replace(tzinfo=UTC))
        yield items

    def _read(self, soql: str, sobject: str) -> list[dict[str, Any]] | None:
        """Every row, or None when the org does not have the object."""
        try:
            return [raw for page in self.client.pages(f"{soql} ORDER BY SystemModstamp, Id", sobject) for raw in page]
        except StreamFailed as exc:
            if "INVALID_TYPE" in str(exc):
                return None
            raise

    def _rate(self, raw: dict[str, Any], corporate: str | None) -> Item:
        return self.build(raw, str(raw.get("Id") or ""), None, base_currency=corporate, **self.map(raw))

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A CurrencyType or DatedConversionRate row (only the latter is queried with StartDate)."""
        return {
            "currency": raw.get("IsoCode"),
            "base_per_unit": _inverse(raw.get("ConversionRate")),
            "valid_from": raw.get("StartDate"),
            "valid_to": raw.get("NextStartDate"),
            "is_dated": "StartDate" in raw,
            "updated_at": raw.get("SystemModstamp"),
        }


def _inverse(rate: Any) -> Any:
    """Units of the corporate currency per one unit: 1 / ConversionRate (a bad rate goes on to be refused)."""
    try:
        value = Decimal(str(rate))
    except (InvalidOperation, ValueError):
        return rate
    return Decimal(1) / value if value > 0 else value
