"""HubSpot's exchange rates (``/settings/v3/currencies``), so multi-currency deals convert
at the portal's own rates without any rate in settings.

``conversionRate`` is company-currency units per one unit of ``fromCurrencyCode``; a
currency may have several rates over time. The newest one is the current rate (from its
``effectiveAt`` on); each older one applies from its ``effectiveAt`` to the next one's, so
a deal converts at the rate in force on its close date. The SDK has no typed API for these
endpoints (:meth:`HubSpotClient.exchange_rates_page` uses its raw call).

A private app without the scope for them gets 403: the stream then yields nothing and
says so, and deals in other currencies need ``[company.fx_rates]`` (they are quarantined
with that advice, and a run that quarantines many is reported degraded). Any other failure
(HubSpot down, rate-limited past the retries) fails the stream: read whole, an empty read
would mark every stored rate deleted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from connectors.base import Item, Stream, StreamContext
from connectors.errors import Forbidden
from connectors.hubspot_client import HubSpotClient
from connectors.hubspot_values import instant
from models.records import ExchangeRateRecord

log = logging.getLogger("salespulse.connectors.hubspot")


class ExchangeRatesStream(Stream):
    name = "exchange_rates"
    primary_key = "id"
    replication_key = "updatedAt"
    record_model = ExchangeRateRecord
    reads_whole = True

    def __init__(self, client: HubSpotClient) -> None:
        self.client = client

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:  # noqa: ARG002 - always a full read
        try:
            company = self.client.company_currency()
            raws: list[dict[str, Any]] = []
            after = None
            while True:
                page, after = self.client.exchange_rates_page(after)
                raws.extend(page)
                if after is None:
                    break
        except Forbidden as exc:  # not an outage: that fails the stream, which keeps the stored rates
            log.warning(
                "HubSpot exchange rates not readable (%s); deals in currencies other than the company's "
                "need [company.fx_rates]",
                exc,
            )
            return
        yield self.items(raws, company)

    def items(self, raws: list[dict[str, Any]], company: str | None) -> list[Item]:
        by_currency: dict[str, list[tuple[datetime | None, dict[str, Any]]]] = defaultdict(list)
        for raw in raws:
            effective = instant(raw.get("effectiveAt"))
            by_currency[str(raw.get("fromCurrencyCode"))].append(
                (effective if isinstance(effective, datetime) else None, raw)
            )
        items: list[Item] = []
        for rates in by_currency.values():
            rates.sort(key=lambda pair: (pair[0] is not None, pair[0] or datetime.min))  # noqa: DTZ901 - sort key only
            for n, (effective, raw) in enumerate(rates):
                later = rates[n + 1][0] if n + 1 < len(rates) else None
                current = n + 1 == len(rates)
                updated = instant(raw.get("updatedAt"))
                items.append(
                    self.build(
                        raw,
                        str(raw.get("id") or ""),
                        updated if isinstance(updated, datetime) else None,
                        currency=raw.get("fromCurrencyCode"),
                        base_currency=raw.get("toCurrencyCode") or company,
                        base_per_unit=raw.get("conversionRate"),
                        valid_from=effective.date() if effective else None,
                        valid_to=None if current or later is None else later.date(),
                        is_dated=not current,
                        updated_at=updated if isinstance(updated, datetime) else None,
                    )
                )
        items.sort(key=lambda i: getattr(i, "updated_at", None) or datetime.min.replace(tzinfo=UTC))
        return items
