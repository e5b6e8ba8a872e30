"""HubSpot's company currency and exchange rates through hubspot-api-client against the fake
HubSpot; and a record whose modification stamp cannot be read is quarantined, not fatal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.base import Rejected
from connectors.errors import StreamFailed
from connectors.hubspot_client import HubSpotClient
from models.records import ExchangeRateRecord
from sandbox.httpbase import Request, Response
from sandbox.hubspot import FakeHubSpot
from sandbox.store import Store
from tests.connectors.test_hubspot import STAMPS, TOKEN, connector, fill, hubspot_settings, policy, read, stream_named

RATES = [
    # (id, currency, corporate, conversionRate, effective day)
    ("801", "USD", 1, "1", None),
    ("802", "EUR", 0, "1.05", "2024-01-01"),
    ("803", "EUR", 0, "1.10", "2024-04-01"),
    ("804", "JPY", 0, "0.0067", "2024-01-01"),
]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeHubSpot]:
    store = Store(tmp_path / "h.db")
    fill(store)
    store.insert_many(
        "currencies",
        [
            {
                "crm": "hubspot",
                "id": rid,
                "seq": n,
                "iso_code": code,
                "conversion_rate": rate,
                "is_corporate": corporate,
                "is_active": 1,
                "start_date": day,
                "next_start_date": None,
                **STAMPS,
            }
            for n, (rid, code, corporate, rate, day) in enumerate(RATES, 1)
        ],
    )
    with FakeHubSpot(store, TOKEN) as server:
        yield server


def test_exchange_rates_come_through_the_sdk_with_their_periods(fake: FakeHubSpot) -> None:
    client = HubSpotClient(hubspot_settings(fake), policy())
    assert client.company_currency() == "USD"

    items = read(stream_named(connector(fake), "exchange_rates"))

    assert all(isinstance(i, ExchangeRateRecord) for i in items), items
    got = {(i.currency, i.valid_from, i.valid_to, i.is_dated): i.base_per_unit for i in items}  # type: ignore[union-attr]
    assert got == {
        ("EUR", date(2024, 1, 1), date(2024, 4, 1), True): Decimal("1.05"),  # the older rate: until the newer one
        ("EUR", date(2024, 4, 1), None, False): Decimal("1.10"),  # the newest: the current rate
        ("JPY", date(2024, 1, 1), None, False): Decimal("0.0067"),
    }
    assert {i.base_currency for i in items} == {"USD"}  # type: ignore[union-attr]


def test_a_record_without_a_readable_stamp_is_quarantined_and_the_stream_goes_on(fake: FakeHubSpot) -> None:
    answer = {
        "total": 2,
        "results": [
            {"id": "9001", "properties": {"hs_lastmodifieddate": "yesterday"}, "createdAt": "x", "updatedAt": "x"},
            {
                "id": "9002",
                "properties": {"hs_lastmodifieddate": "2024-05-01T12:00:00Z", "hubspot_owner_id": "201"},
                "createdAt": "2024-05-01T12:00:00Z",
                "updatedAt": "2024-05-01T12:00:00Z",
            },
        ],
    }

    def search(_request: Request) -> Response:
        return Response(200, answer)

    fake.routes.insert(0, ("POST", re.compile(r"/crm/v3/objects/deals/search\Z"), search))

    items = [i for i in read(stream_named(connector(fake), "opportunities")) if i.external_id in ("9001", "9002")]

    assert [i.external_id for i in items] == ["9001", "9002"]
    bad = items[0]
    assert isinstance(bad, Rejected)
    assert "incremental order" in bad.reason
    assert "'yesterday'" in bad.reason


@pytest.mark.parametrize(
    ("status", "fails"),
    [
        (403, False),  # a token without the currencies scope: no rates, deals need [company.fx_rates]
        (503, True),  # HubSpot down: the stream fails and keeps the stored rates
        (429, True),  # rate-limited past the retries: the same
    ],
)
def test_only_a_refused_scope_reads_no_rates_an_outage_fails_the_stream(
    fake: FakeHubSpot, status: int, fails: bool
) -> None:
    """An empty read would mark every stored rate deleted (the stream is read whole)."""
    fake.faults.arm("server_error", status=status, path="/settings/v3/currencies/exchange-rates", times=10)
    stream = stream_named(connector(fake, policy(retries=1)), "exchange_rates")

    if fails:
        with pytest.raises(StreamFailed, match="exchange rates"):
            read(stream)
    else:
        assert read(stream) == []
