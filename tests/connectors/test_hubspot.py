"""The HubSpot connector, with the real hubspot-api-client against the fake HubSpot.

The company is built by hand (not by the generator) so that every expected record can be
read off the rows the server serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from random import Random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select

from connectors.base import Deleted, Item, Rejected, Stream, StreamContext
from connectors.errors import AuthError, Forbidden, RateLimited, StreamFailed, TransientError
from connectors.hubspot import HubSpotConnector
from connectors.hubspot_client import HubSpotClient, _translate
from connectors.hubspot_history import CloseDateChangesStream, StageChangesStream
from connectors.hubspot_search import modified_since
from connectors.hubspot_streams import CallsStream, LeadsStream, OpportunitiesStream, RepsStream, StagesStream
from connectors.retry import RetryPolicy
from models.clock import FixedClock
from models.database import open_warehouse
from models.records import Record
from models.settings import CompanySettings, HubSpotSettings, Settings
from models.tables import activities, close_date_changes, leads, opportunities, quarantine, reps, stage_changes, stages
from sandbox.hubspot import FakeHubSpot
from sandbox.store import Store, iso_utc
from sync.engine import SyncEngine

TOKEN = "pat-na1-connector-test-token"
PORTAL = "4242"
BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = BASE + timedelta(days=10)


def at(minutes: float) -> str:
    return iso_utc(BASE + timedelta(minutes=minutes))


def moment(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


# -- the company ---------------------------------------------------------------------------
STAMPS = {"created_at": at(-90 * 24 * 60), "modified_at": at(-90 * 24 * 60)}
TEAMS = [("101", "East"), ("102", "West")]
# id, team, email, is_active, deleted_at, modified minute
OWNERS = [
    ("201", "101", "Ann.Lee@Example.com", 1, None, 3),
    ("202", "102", "bob@example.com", 1, None, 1),
    ("203", None, "cy@example.com", 1, None, 2),
    ("204", "101", "dee@example.com", 1, at(10), 4),  # a deleted user: archived owner
    ("205", "102", "eve@example.com", 0, None, 0),  # a deactivated user: archived owner
]
# id, pipeline, display order, probability, closed, won
STAGES = [
    ("appointmentscheduled", "default", 0, 0.2, 0, 0),
    ("qualifiedtobuy", "default", 1, 0.4, 0, 0),
    ("closedwon", "default", 2, 1.0, 1, 1),
    ("closedlost", "default", 3, 0.0, 1, 0),
    ("1190012", "1190011", 0, 0.5, 0, 0),
    ("1190014", "1190011", 1, 1.0, 1, 1),
]
CREATED = -10 * 24 * 60  # minutes: when the deals were created


def deal(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "crm": "hubspot",
        "id": str(5000 + n),
        "seq": n,
        "name": f"Deal {n}",
        "owner_id": "201",
        "amount": "1000",
        "currency": "USD",
        "pipeline_id": "default",
        "stage_id": "appointmentscheduled",
        "close_date": "2024-06-30",
        "is_closed": 0,
        "is_won": 0,
        "closed_at": None,
        "stage_entered_at": at(CREATED),
        "last_activity_at": None,
        "lead_id": None,
        "created_at": at(CREATED),
        "modified_at": at(n // 2),  # pairs share a stamp
        "deleted_at": None,
    }
    return row | changes


DEALS = [
    deal(1),
    deal(2, currency="EUR", amount="2500.5", stage_id="closedwon", is_closed=1, is_won=1),
    deal(3, currency=None, lead_id="3003"),
    deal(4, amount="12k"),
    deal(5, amount=None),
    deal(6, close_date="not a date"),
    deal(7, amount="-25000"),
    deal(8, deleted_at=at(30)),
    deal(9, pipeline_id="1190011", stage_id="1190012", owner_id="204"),
    deal(10, stage_id="closedlost", is_closed=1, close_date="2024-05-20T00:00:00Z"),
    deal(11, stage_id="retiredstage"),
    deal(12, last_activity_at=at(-5), stage_entered_at=at(-60)),
]
DEALS[1]["close_date"] = "2024-05-10T00:00:00Z"
LIVE_DEALS = [d for d in DEALS if d["deleted_at"] is None]
INVALID_DEALS = {"5004", "5005", "5006", "5007"}  # refused by the record model
UNUSABLE_DEALS = {"5011"}  # refused by the warehouse (unknown stage)

# deal, field, old, new, minute
HISTORY = [
    ("5002", "stage", "appointmentscheduled", "qualifiedtobuy", -3000),
    ("5002", "stage", "qualifiedtobuy", "closedwon", -2000),
    ("5001", "close_date", "2024-06-01", "2024-06-15", -3000),
    ("5001", "close_date", "2024-06-15", "2024-06-30", -2000),
]


def contact(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "crm": "hubspot",
        "id": str(3000 + n),
        "seq": n,
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "company": f"Co {n}",
        "email": f"c{n}@example.com",
        "status": "NEW",
        "lifecycle_stage": "lead",
        "converted_at": None,
        "converted_deal_id": None,
        "owner_id": "201",
        "assigned_at": at(-100),
        "source": "ORGANIC_SEARCH",
        "created_at": at(-200),
        "modified_at": at(n),
        "deleted_at": None,
    }
    return row | changes


CONTACTS = [
    contact(1),
    contact(2, lifecycle_stage="salesqualifiedlead", status="CONNECTED"),
    contact(3, lifecycle_stage="opportunity", status="OPEN_DEAL", converted_deal_id="5003", converted_at=at(-50)),
    contact(4, lifecycle_stage=None, status=None, first_name=None, last_name=None, email="MiXed@Example.COM"),
    contact(5, deleted_at=at(40)),
    contact(6, status="QUALIFIED"),
    contact(7, last_name="L" * 5000),
]


def activity(n: int, kind: str, **changes: Any) -> dict[str, Any]:
    row = {
        "crm": "hubspot",
        "id": str(7000 + n),
        "seq": n,
        "type": kind,
        "subject": f"{kind} {n}",
        "owner_id": "202",
        "deal_id": None,
        "lead_id": None,
        "occurred_at": at(-60 * n),
        "created_at": at(-60 * n - 1),
        "modified_at": at(n),
        "deleted_at": None,
    }
    return row | changes


ACTIVITIES = [
    activity(1, "call", deal_id="5001", lead_id="3001"),
    activity(2, "email", deal_id="5002"),
    activity(3, "meeting", lead_id="3002"),
    activity(4, "task"),
    activity(5, "note", deal_id="5001", subject="<p>long-note</p>" * 200),
    activity(6, "call", occurred_at=None),
    activity(7, "email", deleted_at=at(50)),
]


def fill(store: Store) -> None:
    store.insert_many(
        "teams", [{"crm": "hubspot", "id": i, "seq": n, "name": name, **STAMPS} for n, (i, name) in enumerate(TEAMS)]
    )
    store.insert_many(
        "users",
        [
            {
                "crm": "hubspot",
                "id": uid,
                "seq": n,
                "email": email,
                "first_name": f"Rep{uid}",
                "last_name": "Smith",
                "team_id": team,
                "is_active": active,
                "created_at": STAMPS["created_at"],
                "modified_at": at(minute),
                "deleted_at": deleted,
            }
            for n, (uid, team, email, active, deleted, minute) in enumerate(OWNERS)
        ],
    )
    store.insert_many(
        "pipelines",
        [
            {"crm": "hubspot", "id": "default", "label": "Sales", "display_order": 0, **STAMPS},
            {"crm": "hubspot", "id": "1190011", "label": "Renewals", "display_order": 1, **STAMPS},
        ],
    )
    store.insert_many(
        "stages",
        [
            {
                "crm": "hubspot",
                "id": sid,
                "seq": n,
                "pipeline_id": pipeline,
                "label": sid.title(),
                "api_name": sid,
                "display_order": order,
                "probability": probability,
                "is_closed": closed,
                "is_won": won,
                **STAMPS,
            }
            for n, (sid, pipeline, order, probability, closed, won) in enumerate(STAGES)
        ],
    )
    store.insert_many("deals", DEALS)
    store.insert_many(
        "deal_history",
        [
            {"crm": "hubspot", "id": str(90 + n), "seq": n, "deal_id": d, "field": f, "old_value": o, "new_value": v}
            | {"changed_at": at(m)}
            for n, (d, f, o, v, m) in enumerate(HISTORY)
        ],
    )
    store.insert_many("leads", CONTACTS)
    store.insert_many("activities", ACTIVITIES)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHubSpot]:
    store = Store(tmp_path_factory.mktemp("hubspot") / "h.db")
    fill(store)
    with FakeHubSpot(store, TOKEN) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        request.getfixturevalue("server").faults.clear()


class Sleeps(list):
    """A RetryPolicy sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def policy(sleeps: Sleeps | None = None, retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=retries, sleep=sleeps if sleeps is not None else Sleeps(), jitter=lambda: 1.0)


def hubspot_settings(fake: FakeHubSpot, **changes: Any) -> HubSpotSettings:
    values = {"base_url": fake.base_url, "access_token": SecretStr(TOKEN), "portal_id": PORTAL, "timeout_s": 5.0}
    return HubSpotSettings(**(values | changes))


def connector(fake: FakeHubSpot, retry: RetryPolicy | None = None, **changes: Any) -> HubSpotConnector:
    return HubSpotConnector(hubspot_settings(fake, **changes), retry or policy(), default_currency="GBP")


def stream_named(conn: HubSpotConnector, name: str) -> Stream:
    return next(s for s in conn.streams() if s.name == name)


def read(stream: Stream, since: datetime | None = None) -> list[Item]:
    return [item for page in stream.get_pages(StreamContext(since, started_at=NOW)) for item in page]


def by_id(items: list[Item]) -> dict[str, Item]:
    return {item.external_id: item for item in items}


def value_of(item: Item) -> datetime | None:
    return item.updated_at if isinstance(item, Record) else item.replication_value


# -- mapping, stream by stream ----------------------------------------------------------------
MAPPING_CASES = [
    ("reps", "201", {"email": "ann.lee@example.com", "name": "Rep201 Smith", "team_id": "101", "team": "East"}),
    ("reps", "203", {"team_id": None, "team": None, "is_active": True, "updated_at": moment(2)}),
    ("reps", "204", {"is_active": False, "team": "East"}),
    ("reps", "205", {"is_active": False, "team_id": "102"}),
    ("stages", "appointmentscheduled", {"pipeline": "default", "api_name": "appointmentscheduled", "sort_order": 0}),
    ("stages", "closedwon", {"probability": 1.0, "is_closed": True, "is_won": True}),
    ("stages", "closedlost", {"probability": 0.0, "is_closed": True, "is_won": False}),
    ("stages", "1190012", {"pipeline": "1190011", "probability": 0.5, "is_closed": False, "label": "1190012"}),
    (
        "leads",
        "3001",
        {
            "name": "First1 Last1",
            "company": "Co 1",
            "owner_id": "201",
            "status": "NEW",
            "lead_source": "ORGANIC_SEARCH",
            "is_qualified": False,
            "is_converted": False,
            "converted_opportunity_id": None,
            "created_at": moment(-200),
            "assigned_at": moment(-100),
            "updated_at": moment(1),
        },
    ),
    ("leads", "3002", {"is_qualified": True, "is_converted": False, "status": "CONNECTED"}),
    (
        "leads",
        "3003",
        {"is_qualified": True, "is_converted": True, "converted_opportunity_id": "5003", "converted_at": moment(-50)},
    ),
    ("leads", "3004", {"name": None, "status": None, "email": "mixed@example.com"}),
    ("leads", "3006", {"is_qualified": True, "status": "QUALIFIED"}),
    (
        "opportunities",
        "5001",
        {
            "name": "Deal 1",
            "owner_id": "201",
            "amount": Decimal("1000.00"),
            "currency": "USD",
            "pipeline": "default",
            "stage": "appointmentscheduled",
            "is_closed": False,
            "is_won": False,
            "created_at": moment(CREATED),
            "close_date": date(2024, 6, 30),
            "closed_at": None,
            "stage_entered_at": moment(CREATED),
            "crm_url": f"https://app.hubspot.com/contacts/{PORTAL}/deal/5001",
            "updated_at": moment(0),
        },
    ),
    (
        "opportunities",
        "5002",
        {
            "currency": "EUR",
            "amount": Decimal("2500.50"),
            "is_closed": True,
            "is_won": True,
            "close_date": date(2024, 5, 10),
            "closed_at": datetime(2024, 5, 10, tzinfo=UTC),
        },
    ),
    ("opportunities", "5003", {"currency": "GBP"}),  # no deal_currency_code: the connector's default
    ("opportunities", "5009", {"pipeline": "1190011", "stage": "1190012", "owner_id": "204"}),
    ("opportunities", "5010", {"is_closed": True, "is_won": False, "closed_at": datetime(2024, 5, 20, tzinfo=UTC)}),
    ("opportunities", "5012", {"last_activity_at": moment(-5), "stage_entered_at": moment(-60)}),
    ("calls", "7001", {"type": "call", "rep_id": "202", "opportunity_id": "5001", "lead_id": "3001"}),
    ("calls", "7006", {"occurred_at": moment(-361), "created_at": moment(-361)}),  # no hs_timestamp
    ("emails", "7002", {"type": "email", "opportunity_id": "5002", "lead_id": None, "subject": "email 2"}),
    ("meetings", "7003", {"type": "meeting", "opportunity_id": None, "lead_id": "3002", "occurred_at": moment(-180)}),
    ("tasks", "7004", {"type": "task", "opportunity_id": None, "lead_id": None, "created_at": moment(-241)}),
    ("notes", "7005", {"type": "note", "opportunity_id": "5001", "updated_at": moment(5)}),
]


@pytest.fixture(scope="module")
def full_read(server: FakeHubSpot) -> dict[str, list[Item]]:
    conn = connector(server)
    return {s.name: read(s) for s in conn.streams()}


@pytest.mark.parametrize(
    ("stream", "record_id", "expected"), MAPPING_CASES, ids=[f"{c[0]}-{c[1]}" for c in MAPPING_CASES]
)
def test_records_map_from_hubspot_properties(
    full_read: dict[str, list[Item]], stream: str, record_id: str, expected: dict[str, Any]
) -> None:
    record = by_id(full_read[stream])[record_id]

    assert isinstance(record, Record), record
    assert {k: getattr(record, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("stream", "record_id", "reason"),
    [
        ("opportunities", "5004", "amount: Input should be a valid decimal (got '12k')"),
        ("opportunities", "5005", "amount: is missing"),
        ("opportunities", "5006", "close_date: Input should be a valid date"),
        ("opportunities", "5007", "amount: Input should be greater than or equal to 0"),
        ("close_date_changes", "5006", "new_date: Input should be a valid date"),
    ],
)
def test_dirty_records_become_rejected_with_a_reason(
    full_read: dict[str, list[Item]], stream: str, record_id: str, reason: str
) -> None:
    [rejected] = [i for i in full_read[stream] if isinstance(i, Rejected) and i.external_id.startswith(record_id)]

    assert reason in rejected.reason
    assert rejected.replication_value == moment(int(record_id[-2:]) // 2)


def test_long_free_text_is_clipped_not_refused(full_read: dict[str, list[Item]]) -> None:
    lead = by_id(full_read["leads"])["3007"]
    note = by_id(full_read["notes"])["7005"]

    assert len(lead.name) == len(note.subject) == 1000


@pytest.mark.parametrize(
    ("stream", "rows"),
    [
        ("reps", OWNERS),
        ("stages", STAGES),
        ("leads", [c for c in CONTACTS if c["deleted_at"] is None]),
        ("opportunities", LIVE_DEALS),
        ("calls", [a for a in ACTIVITIES if a["type"] == "call" and a["deleted_at"] is None]),
    ],
)
def test_every_live_record_comes_once_in_ascending_order(
    full_read: dict[str, list[Item]], stream: str, rows: list[Any]
) -> None:
    items = [i for i in full_read[stream] if not isinstance(i, Deleted)]
    values = [value_of(i) for i in items]

    assert sorted(i.external_id for i in items) == sorted(r["id"] if isinstance(r, dict) else r[0] for r in rows)
    assert values == sorted(values)


def test_stage_history_becomes_one_change_per_entry(full_read: dict[str, list[Item]]) -> None:
    changes = [c for c in full_read["stage_changes"] if c.opportunity_id == "5002"]

    ms = int(moment(CREATED).timestamp() * 1000)
    assert [(c.from_stage, c.to_stage, c.changed_at) for c in changes] == [
        (None, "appointmentscheduled", moment(CREATED)),
        ("appointmentscheduled", "qualifiedtobuy", moment(-3000)),
        ("qualifiedtobuy", "closedwon", moment(-2000)),
    ]
    assert changes[0].external_id == f"5002:{ms}:appointmentscheduled"
    assert {c.updated_at for c in changes} == {moment(1)}  # the deal's stamp: the replication value
    assert len(full_read["stage_changes"]) == len(LIVE_DEALS) + 2


def test_close_date_history_becomes_old_and_new_dates(full_read: dict[str, list[Item]]) -> None:
    changes = [c for c in full_read["close_date_changes"] if isinstance(c, Record) and c.opportunity_id == "5001"]

    assert [(c.old_date, c.new_date, c.changed_at) for c in changes] == [
        (None, date(2024, 6, 1), moment(CREATED)),
        (date(2024, 6, 1), date(2024, 6, 15), moment(-3000)),
        (date(2024, 6, 15), date(2024, 6, 30), moment(-2000)),
    ]


def test_change_ids_are_stable_across_reads(server: FakeHubSpot, full_read: dict[str, list[Item]]) -> None:
    again = read(stream_named(connector(server), "close_date_changes"))

    assert [i.external_id for i in again] == [i.external_id for i in full_read["close_date_changes"]]
    assert len({i.external_id for i in again}) == len(again)


# -- any dirty value: a record or a Rejected, never an exception -----------------------------------
DIRTY = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.sampled_from(["", "true", "false", "1e15", "-1", "NaN", "2024-02-30", "2024-06-01", "1714564800000"]),
    st.sampled_from(["2024-05-01T12:00:00.000Z", "2024-05-01T12:00:00+02:00", "99999999999999999999"]),
)


def _props(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: DIRTY for name in names})


def _is_item(item: Any) -> bool:
    return isinstance(item, Record) or (isinstance(item, Rejected) and bool(item.reason))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deal_props=_props(OpportunitiesStream.properties),
    lead_props=_props(LeadsStream.properties),
    call_props=_props(CallsStream.properties),
    link=st.one_of(st.none(), st.text(max_size=70)),
)
def test_any_property_values_give_a_record_or_a_reason(
    deal_props: dict[str, Any], lead_props: dict[str, Any], call_props: dict[str, Any], link: str | None
) -> None:
    deals = OpportunitiesStream(None, default_currency="USD", portal_id=PORTAL)  # type: ignore[arg-type]
    raw = {"id": "5001", "updatedAt": at(0)}

    items = [
        deals.item(raw | {"properties": deal_props}, BASE, {}),
        LeadsStream(None).item(raw | {"properties": lead_props}, BASE, {"deals": link}),  # type: ignore[arg-type]
        CallsStream(None).item(raw | {"properties": call_props}, BASE, {"deals": link, "contacts": None}),  # type: ignore[arg-type]
    ]

    assert all(_is_item(i) for i in items), items


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(st.fixed_dictionaries({"value": DIRTY, "timestamp": DIRTY}), max_size=4),
    owner=st.fixed_dictionaries(
        {"id": st.just("201"), "firstName": DIRTY, "lastName": DIRTY, "email": DIRTY, "updatedAt": DIRTY}
    ),
    stage=st.fixed_dictionaries(
        {"id": st.just("s1"), "label": DIRTY, "displayOrder": st.one_of(st.none(), st.integers())}
        | {"metadata": st.fixed_dictionaries({"isClosed": DIRTY, "probability": DIRTY})}
    ),
)
def test_any_history_owner_or_stage_gives_a_record_or_a_reason(
    entries: list[dict[str, Any]], owner: dict[str, Any], stage: dict[str, Any]
) -> None:
    items = [
        *StageChangesStream(None).changes("5001", entries, BASE),  # type: ignore[arg-type]
        *CloseDateChangesStream(None).changes("5001", entries, BASE),  # type: ignore[arg-type]
        RepsStream(None).item(owner, archived=False),  # type: ignore[arg-type]
        StagesStream(None).item({"id": "default"}, stage),  # type: ignore[arg-type]
    ]

    assert all(_is_item(i) for i in items), items
    assert all(len(i.external_id) <= 64 for i in items)


# -- incremental reads -------------------------------------------------------------------------
@pytest.mark.parametrize("since_minute", [None, 0, 3, 4.5, 29, 30, 31])
def test_incremental_read_starts_at_since_and_deletes_what_was_archived_since(
    server: FakeHubSpot, since_minute: float | None
) -> None:
    since = None if since_minute is None else moment(since_minute)

    items = read(stream_named(connector(server), "opportunities"), since)

    deleted = [i.external_id for i in items if isinstance(i, Deleted)]
    live = [i.external_id for i in items if not isinstance(i, Deleted)]
    assert live == [d["id"] for d in LIVE_DEALS if since is None or d["modified_at"] >= iso_utc(since)]
    assert deleted == [
        d["id"] for d in DEALS if d["deleted_at"] and (since is None or d["deleted_at"] >= iso_utc(since))
    ]


@pytest.mark.parametrize(("stream", "archived_id"), [("leads", "3005"), ("emails", "7007"), ("opportunities", "5008")])
def test_archived_records_come_first_as_deletions(
    full_read: dict[str, list[Item]], stream: str, archived_id: str
) -> None:
    first = full_read[stream][0]

    assert first == Deleted(
        archived_id,
        deleted_at=next(
            datetime.fromisoformat(r["deleted_at"]) for r in (*DEALS, *CONTACTS, *ACTIVITIES) if r["id"] == archived_id
        ),
    )


@pytest.mark.parametrize("page_size", [1, 2, 3, 5, 200])
def test_ties_on_the_boundary_are_neither_lost_nor_repeated(server: FakeHubSpot, page_size: int) -> None:
    client = HubSpotClient(hubspot_settings(server), policy())

    pages = list(modified_since(client, "deals", "hs_lastmodifieddate", [], None, page_size=page_size))

    found = [(raw["id"], stamp) for page in pages for raw, stamp in page]
    assert sorted(i for i, _ in found) == sorted(d["id"] for d in LIVE_DEALS)
    assert [s for _, s in found] == sorted(s for _, s in found)
    assert all(len(page) <= page_size for page in pages)


BIG = 10_400
TIED = 10_100  # deals sharing one stamp, far more than one search query may return


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeHubSpot, dict[str, str]]]:
    """10,400 deals: 150 before the tie (pairs share stamps), 10,100 on one stamp, 150 after; ids shuffled."""
    store = Store(tmp_path_factory.mktemp("hubspot-big") / "h.db")
    seqs = list(range(1, BIG + 1))
    Random(7).shuffle(seqs)
    stamps: dict[str, str] = {}
    for rank, seq in enumerate(seqs):
        if rank < 150:
            stamps[str(seq)] = at(rank // 2)
        elif rank < 150 + TIED:
            stamps[str(seq)] = at(100)
        else:
            stamps[str(seq)] = at(200 + rank)
    store.insert_many(
        "deals",
        [{"crm": "hubspot", "id": i, "seq": int(i), "created_at": at(-1), "modified_at": s} for i, s in stamps.items()],
    )
    with FakeHubSpot(store, TOKEN) as fake:
        yield fake, stamps


@pytest.mark.parametrize("since_minute", [None, 100])
def test_more_than_ten_thousand_changes_come_out_exactly_once_in_order(
    big_server: tuple[FakeHubSpot, dict[str, str]], since_minute: int | None
) -> None:
    fake, stamps = big_server
    client = HubSpotClient(hubspot_settings(fake), policy())
    since = None if since_minute is None else moment(since_minute)

    found = [
        (raw["id"], stamp)
        for page in modified_since(client, "deals", "hs_lastmodifieddate", [], since)
        for raw, stamp in page
    ]

    want = {i for i, s in stamps.items() if since is None or s >= iso_utc(since)}
    assert len(want) > 10_000
    assert len(found) == len(want)
    assert {i for i, _ in found} == want
    assert [s for _, s in found] == sorted(s for _, s in found)


# -- errors and retries ------------------------------------------------------------------------------
def test_429_with_retry_after_is_waited_out(server: FakeHubSpot) -> None:
    sleeps = Sleeps()
    server.faults.arm("rate_limit", path="/crm/v3/objects/deals/search", times=2, retry_after=7)

    items = read(stream_named(connector(server, policy(sleeps)), "opportunities"))

    assert sleeps == [7, 7]
    assert len([i for i in items if not isinstance(i, Deleted)]) == len(LIVE_DEALS)


@pytest.mark.parametrize(
    ("fault", "path", "stream"),
    [
        ({"kind": "server_error", "status": 503}, "/crm/v3/objects/contacts/search", "leads"),
        ({"kind": "server_error", "status": 502}, "/crm/v4/associations/calls/deals", "calls"),
        ({"kind": "truncate"}, "/crm/v3/objects/deals/search", "opportunities"),
        ({"kind": "truncate"}, "/crm/v3/objects/deals/batch/read", "stage_changes"),
        ({"kind": "drop"}, "/crm/v3/owners", "reps"),
        ({"kind": "timeout", "delay": 1.0}, "/crm/v3/pipelines/deals", "stages"),
    ],
)
def test_transient_failures_are_retried_with_backoff(
    server: FakeHubSpot, full_read: dict[str, list[Item]], fault: dict[str, Any], path: str, stream: str
) -> None:
    sleeps = Sleeps()
    server.faults.arm(**fault, path=path)

    items = read(stream_named(connector(server, policy(sleeps), timeout_s=0.3), stream))

    assert sleeps == [1.0]  # one back-off of backoff_base_s
    assert items == full_read[stream]


def test_truncated_json_is_a_transient_error(server: FakeHubSpot) -> None:
    server.faults.arm("truncate", path="/crm/v3/objects/deals/search")
    client = HubSpotClient(hubspot_settings(server), policy(retries=0))

    with pytest.raises(StreamFailed) as caught:
        client.search("deals", {"limit": 10})

    assert isinstance(caught.value.__cause__, TransientError)
    assert "unreadable answer" in caught.value.message


def test_retries_exhausted_fail_the_stream(server: FakeHubSpot) -> None:
    sleeps = Sleeps()
    server.faults.arm("server_error", status=503, path="/search", times=10)

    with pytest.raises(StreamFailed) as caught:
        read(stream_named(connector(server, policy(sleeps, retries=2)), "opportunities"))

    assert "still failing after 2 retries" in caught.value.message
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    ("token", "fault", "category"),
    [("pat-na1-wrong-token", None, "INVALID_AUTHENTICATION"), (TOKEN, "expired_session", "EXPIRED_AUTHENTICATION")],
)
def test_auth_failure_is_an_auth_error_without_retry_or_token(
    server: FakeHubSpot, token: str, fault: str | None, category: str
) -> None:
    if fault:
        server.faults.arm(fault, path="/crm/v3/owners")
    before = len(server.requests)

    with pytest.raises(AuthError) as caught:
        read(stream_named(connector(server, access_token=SecretStr(token)), "reps"))

    assert category in str(caught.value)
    assert token not in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(server.requests) - before == 1


def test_daily_limit_fails_at_once(server: FakeHubSpot) -> None:
    sleeps = Sleeps()
    server.faults.arm("request_limit", path="/crm/v3/objects/deals")

    with pytest.raises(StreamFailed, match="daily API limit"):
        read(stream_named(connector(server, policy(sleeps)), "opportunities"))

    assert sleeps == []


@pytest.mark.parametrize(
    ("call", "base_path", "message"),
    [
        (lambda c: c.search("widgets", {}), "", "(400): Unable to infer object type from: widgets"),
        (lambda c: c.pipelines("deals"), "/nowhere", "404 OBJECT_NOT_FOUND): Resource not found"),
    ],
)
def test_requests_hubspot_refuses_fail_the_stream_with_its_message(
    server: FakeHubSpot, call: Callable[[HubSpotClient], Any], base_path: str, message: str
) -> None:
    client = HubSpotClient(hubspot_settings(server, base_url=server.base_url + base_path), policy())

    with pytest.raises(StreamFailed) as caught:
        call(client)

    assert message in caught.value.message


class _ApiError:
    """The attributes of the SDK's ApiException that translation reads."""

    def __init__(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.reason, self.headers = status, "Reason", headers or {}
        self.body = orjson.dumps(body) if body is not None else b""


@pytest.mark.parametrize(
    ("error", "kind", "wait"),
    [
        (_ApiError(429, headers={"Retry-After": "3"}), RateLimited, 3.0),
        (_ApiError(429, headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}), RateLimited, 10.0),
        (_ApiError(429, {"policyName": "SECONDLY"}), RateLimited, 1.0),
        (_ApiError(429, {"policyName": "DAILY"}, {"Retry-After": "3"}), StreamFailed, None),
        (_ApiError(401, {"category": "INVALID_AUTHENTICATION"}), AuthError, None),
        (_ApiError(403, {"category": "MISSING_SCOPES", "message": "needs crm.objects.deals.read"}), Forbidden, None),
        (_ApiError(404), StreamFailed, None),
        (_ApiError(500), TransientError, None),
        (_ApiError(504), TransientError, None),
        (_ApiError(0), TransientError, None),
    ],
)
def test_api_errors_translate_by_what_the_engine_should_do(error: _ApiError, kind: type, wait: float | None) -> None:
    translated = _translate(error, "deals search")

    assert type(translated) is kind
    assert getattr(translated, "retry_after", None) == wait


# -- through the engine into the warehouse --------------------------------------------------------------
STREAM_NAMES = (
    "exchange_rates",
    "reps",
    "stages",
    "leads",
    "opportunities",
    "stage_changes",
    "close_date_changes",
    "calls",
    "emails",
    "meetings",
    "tasks",
    "notes",
)


def _warehouse_ids(engine: Any, table: Any) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(table.c.external_id).where(table.c.deleted_at.is_(None))).scalars())


def test_sync_lands_the_store_in_the_warehouse_then_follows_changes(tmp_path: Path) -> None:
    store_clock = FixedClock(NOW + timedelta(hours=1))
    store = Store(tmp_path / "h.db", clock=store_clock)
    fill(store)
    clock = FixedClock(NOW)
    app = Settings(company=CompanySettings(fx_rates={"EUR": Decimal("1.10"), "GBP": Decimal("1.25")}))
    warehouse = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    with FakeHubSpot(store, TOKEN) as fake:
        engine = SyncEngine(warehouse, app, clock)
        results = engine.sync_source(connector(fake))

        assert {r.stream: r.status for r in results} == dict.fromkeys(STREAM_NAMES, "ok")
        expected_deals = {d["id"] for d in LIVE_DEALS} - INVALID_DEALS - UNUSABLE_DEALS
        assert _warehouse_ids(warehouse, reps) == {o[0] for o in OWNERS}
        assert _warehouse_ids(warehouse, leads) == {c["id"] for c in CONTACTS if not c["deleted_at"]}
        assert _warehouse_ids(warehouse, opportunities) == expected_deals
        assert _warehouse_ids(warehouse, activities) == {a["id"] for a in ACTIVITIES if not a["deleted_at"]}
        with warehouse.connect() as conn:
            assert conn.execute(select(func.count()).select_from(stages)).scalar() == len(STAGES)
            assert conn.execute(select(func.count()).select_from(stage_changes)).scalar() == len(LIVE_DEALS) + 2
            assert conn.execute(select(func.count()).select_from(close_date_changes)).scalar() == len(LIVE_DEALS) + 1
            amounts = dict(conn.execute(select(opportunities.c.external_id, opportunities.c.amount)).all())
            assert amounts == {d["id"]: Decimal(d["amount"]) for d in DEALS if d["id"] in expected_deals}
            quarantined = set(conn.execute(select(quarantine.c.stream, quarantine.c.external_id)).all())
        assert {i for s, i in quarantined if s == "opportunities"} == INVALID_DEALS | UNUSABLE_DEALS

        store.update("deals", "hubspot", ["5001"], amount="4321")
        store.delete("deals", "hubspot", ["5002"])
        store.delete("activities", "hubspot", ["7001"])
        clock.advance(timedelta(days=1))
        engine.sync_source(connector(fake))

    with warehouse.connect() as conn:
        amounts = dict(conn.execute(select(opportunities.c.external_id, opportunities.c.amount)).all())
        assert amounts["5001"] == Decimal("4321")
    assert _warehouse_ids(warehouse, opportunities) == expected_deals - {"5002"}
    # 7002 is an email on the archived deal 5002: it goes with the deal.
    live = {a["id"] for a in ACTIVITIES if not a["deleted_at"] and a["deal_id"] != "5002"}
    assert _warehouse_ids(warehouse, activities) == live - {"7001"}


@pytest.mark.parametrize(
    ("status", "says", "fix"),
    [
        (400, "HubSpot rejected", "check hubspot.base_url"),
        (404, "HubSpot rejected", "report it with this message"),
        (403, "HubSpot refused", "give the private app the read scope"),
    ],
)
def test_a_client_error_says_how_to_fix_it(server: FakeHubSpot, status: int, says: str, fix: str) -> None:
    server.faults.arm("server_error", status=status, path="/crm/v3/objects/deals/search")
    client = HubSpotClient(hubspot_settings(server), policy(retries=0))

    with pytest.raises(StreamFailed) as caught:
        client.search("deals", {"limit": 10})

    assert says in caught.value.message
    assert fix in caught.value.message
