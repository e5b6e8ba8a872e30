"""The fake HubSpot server, checked through the real hubspot-api-client.

The company is built by hand here (not by the generator) so every expectation can be
computed from the same rows the server reads.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hubspot
import pytest
import urllib3
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.deals import (
    ApiException,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
)
from hubspot.crm.deals.exceptions import NotFoundException, ServiceException, UnauthorizedException
from hubspot.crm.owners.exceptions import ApiException as OwnersApiException

from sandbox.hubspot import FakeHubSpot
from sandbox.hubspot_ratelimit import RateLimits
from sandbox.store import Store, iso_utc

TOKEN = "pat-sandbox-token"
BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STAGES = ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "closedwon", "closedlost"]
PROBABILITY = {"appointmentscheduled": 0.2, "qualifiedtobuy": 0.4, "presentationscheduled": 0.6, "closedwon": 1.0}
ENGAGEMENTS = ["call", "email", "meeting", "task", "note"]
N_DEALS = 650


def ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def stage_path(stage: str) -> list[str]:
    """The stages a deal went through to reach its current one."""
    k = STAGES.index(stage)
    return STAGES[: k + 1] if k < 3 else [*STAGES[:3], stage]


def make_deal(s: int) -> dict[str, Any]:
    stage = STAGES[s % 5]
    created = BASE - timedelta(days=30) + timedelta(minutes=s)
    return {
        "crm": "hubspot",
        "id": str(500 + s),  # 501..1150: crosses 999 -> 1000
        "seq": s,
        "name": f"Deal {s}",
        "owner_id": f"20{s % 3 + 1}",
        "amount": "12k" if s == 7 else str(1000 * (s % 7)),  # one dirty amount, served as is
        "currency": "EUR" if s % 4 == 0 else "USD",
        "pipeline_id": "default",
        "stage_id": stage,
        "close_date": None if s % 10 == 0 else f"2024-06-{s % 28 + 1:02d}T00:00:00Z",
        "is_closed": int(stage in ("closedwon", "closedlost")),
        "is_won": int(stage == "closedwon"),
        "stage_entered_at": iso_utc(created + timedelta(hours=len(stage_path(stage)) - 1)),
        "lead_id": str(2000 + s) if s <= 50 else None,
        "created_at": iso_utc(created),
        "modified_at": iso_utc(BASE + timedelta(minutes=s // 2)),  # pairs share a timestamp
        "deleted_at": iso_utc(BASE + timedelta(days=1)) if s % 100 == 50 else None,
    }


DEALS = [make_deal(s) for s in range(1, N_DEALS + 1)]
LIVE = [d for d in DEALS if d["deleted_at"] is None]


def deal_history() -> list[dict[str, Any]]:
    rows = []
    for d in DEALS:
        created = datetime.fromisoformat(d["created_at"])
        path = stage_path(d["stage_id"])
        for i in range(1, len(path)):
            rows.append(
                {
                    "field": "stage",
                    "old_value": path[i - 1],
                    "new_value": path[i],
                    "changed_at": iso_utc(created + timedelta(hours=i)),
                    "deal_id": d["id"],
                }
            )
    rows.append(
        {"field": "amount", "old_value": "500", "new_value": "1000", "changed_at": iso_utc(BASE), "deal_id": "501"}
    )
    return [{"crm": "hubspot", "id": str(70000 + i), "seq": i, **r} for i, r in enumerate(rows, 1)]


def contacts() -> list[dict[str, Any]]:
    return [
        {
            "crm": "hubspot",
            "id": str(2000 + s),
            "seq": s,
            "first_name": f"First{s}",
            "last_name": f"Last{s}",
            "email": f"c{s}@example.com",
            "company": f"Company {s % 7}",
            "lifecycle_stage": "lead",
            "status": "NEW",
            "owner_id": f"20{s % 3 + 1}",
            "assigned_at": iso_utc(BASE - timedelta(days=s)),
            "source": "ORGANIC_SEARCH",
            "converted_deal_id": str(500 + s) if 51 <= s <= 60 else None,
            "created_at": iso_utc(BASE - timedelta(days=60)),
            "modified_at": iso_utc(BASE + timedelta(minutes=s)),
            "deleted_at": iso_utc(BASE) if s == 100 else None,
        }
        for s in range(1, 101)
    ]


def activities() -> list[dict[str, Any]]:
    return [
        {
            "crm": "hubspot",
            "id": str(9000 + s),
            "seq": s,
            "type": ENGAGEMENTS[s % 5],
            "subject": f"{ENGAGEMENTS[s % 5]} {s}",
            "owner_id": "201",
            "deal_id": str(500 + s % 3 + 1),  # deals 501..503
            "lead_id": str(2000 + s % 4 + 1) if s % 2 == 0 else None,
            "occurred_at": iso_utc(BASE - timedelta(hours=s)),
            "created_at": iso_utc(BASE - timedelta(hours=s)),
            "modified_at": iso_utc(BASE - timedelta(hours=s)),
            "deleted_at": iso_utc(BASE) if s == 50 else None,
        }
        for s in range(1, 51)
    ]


def fill(store: Store) -> None:
    now = iso_utc(BASE - timedelta(days=90))
    stamps = {"created_at": now, "modified_at": now}
    store.insert_many(
        "teams",
        [
            {"crm": "hubspot", "id": f"10{i}", "seq": i, "name": n, "parent_id": None, **stamps}
            for i, n in [(1, "East"), (2, "West")]
        ],
    )
    users = [
        ("201", "101", 1, None),
        ("202", "101", 1, None),
        ("203", "102", 1, None),
        ("204", "102", 1, iso_utc(BASE)),  # deleted
        ("205", None, 0, None),  # deactivated
    ]
    store.insert_many(
        "users",
        [
            {
                "crm": "hubspot",
                "id": uid,
                "seq": i,
                "email": f"rep{uid}@example.com",
                "first_name": f"Rep{uid}",
                "last_name": "Smith",
                "team_id": team,
                "is_active": active,
                "deleted_at": deleted,
                **stamps,
            }
            for i, (uid, team, active, deleted) in enumerate(users, 1)
        ],
    )
    store.insert_many(
        "pipelines",
        [
            {"crm": "hubspot", "id": "default", "label": "Sales Pipeline", "display_order": 0, **stamps},
            {"crm": "hubspot", "id": "renewals", "label": "Renewals", "display_order": 1, **stamps},
        ],
    )
    store.insert_many(
        "stages",
        [
            {
                "crm": "hubspot",
                "id": stage,
                "seq": i,
                "pipeline_id": "default",
                "label": stage.title(),
                "api_name": stage,
                "display_order": i,
                "probability": PROBABILITY.get(stage, 0.0),
                "is_closed": int(i >= 3),
                "is_won": int(stage == "closedwon"),
                **stamps,
            }
            for i, stage in enumerate(STAGES)
        ],
    )
    store.insert_many("deals", DEALS)
    store.insert_many("deal_history", deal_history())
    store.insert_many("leads", contacts())
    store.insert_many("activities", activities())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHubSpot]:
    store = Store(tmp_path_factory.mktemp("hubspot") / "h.db")
    fill(store)
    with FakeHubSpot(store, TOKEN) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_leftover_faults(server: FakeHubSpot) -> Iterator[None]:
    yield
    server.faults.clear()


def plain_client(server: FakeHubSpot) -> hubspot.Client:
    """A client with retries off, so a test sees the server's own answer.

    Left to its default, urllib3 retries a GET three times on a 429/503 that carries
    Retry-After (see test_sdk_default_retry_covers_get_but_not_search).
    """
    return hubspot.Client.create(access_token=TOKEN, host=server.base_url, retry=False)


@pytest.fixture
def client(server: FakeHubSpot) -> hubspot.Client:
    return plain_client(server)


def search_all(client: hubspot.Client, body: dict[str, Any], obj: str = "deals") -> list[Any]:
    """Every result of a search, following paging.next.after."""
    api = client.crm.deals.search_api if obj == "deals" else client.crm.objects.search_api
    results, after = [], None
    while True:
        page_body = {**body, "after": after} if after else body
        if obj == "deals":
            page = api.do_search(public_object_search_request=page_body)
        else:
            page = api.do_search(obj, public_object_search_request=page_body)
        results.extend(page.results)
        if page.paging is None:
            return results
        after = page.paging.next.after


# -- search ------------------------------------------------------------------------------


def test_search_pages_through_every_live_deal_in_id_order(client: hubspot.Client) -> None:
    first = client.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=200))
    assert first.total == len(LIVE)
    assert first.paging.next.after == "200"

    results = search_all(client, {"limit": 200})

    assert [r.id for r in results] == [d["id"] for d in LIVE]
    assert all(r.archived is False for r in results)
    deal = results[0]
    assert set(deal.properties) == {
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    }
    assert deal.created_at == datetime.fromisoformat(LIVE[0]["created_at"])


def test_search_serves_dirty_values_as_stored(client: hubspot.Client) -> None:
    request = {"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "507"}]}]}
    [deal] = client.crm.deals.search_api.do_search(public_object_search_request=request).results

    assert deal.properties["amount"] == "12k"
    assert deal.properties["hs_lastmodifieddate"] == DEALS[6]["modified_at"]


def _f(prop: str, op: str, **kw: Any) -> dict[str, Any]:
    return {"propertyName": prop, "operator": op, **kw}


def _entered(d: dict[str, Any], stage: str) -> bool:
    return stage in stage_path(d["stage_id"])


LATE = BASE + timedelta(minutes=200)
FILTER_CASES = [
    ("eq", [[_f("dealstage", "EQ", value="closedwon")]], lambda d: d["stage_id"] == "closedwon"),
    ("neq", [[_f("dealstage", "NEQ", value="closedwon")]], lambda d: d["stage_id"] != "closedwon"),
    (
        "in",
        [[_f("dealstage", "IN", values=["closedwon", "closedlost"])]],
        lambda d: d["stage_id"] in ("closedwon", "closedlost"),
    ),
    ("not_in", [[_f("hubspot_owner_id", "NOT_IN", values=["201", "202"])]], lambda d: d["owner_id"] == "203"),
    ("bool", [[_f("hs_is_closed_won", "EQ", value="true")]], lambda d: d["is_won"] == 1),
    ("not_has", [[_f("closedate", "NOT_HAS_PROPERTY")]], lambda d: d["close_date"] is None),
    (
        "stage_entered",
        [[_f("hs_v2_date_entered_presentationscheduled", "HAS_PROPERTY")]],
        lambda d: _entered(d, "presentationscheduled"),
    ),
    ("numeric_id", [[_f("hs_object_id", "GT", value="999")]], lambda d: int(d["id"]) > 999),
    (
        "between_ms",
        [[_f("hs_lastmodifieddate", "BETWEEN", value=ms(BASE + timedelta(minutes=10)), highValue=ms(LATE))]],
        lambda d: iso_utc(BASE + timedelta(minutes=10)) <= d["modified_at"] <= iso_utc(LATE),
    ),
    (
        "lt_iso",
        [[_f("createdate", "LT", value="2024-04-01T12:30:00Z")]],
        lambda d: d["created_at"] < "2024-04-01T12:30",
    ),
    (
        "or_of_ands",
        [
            [_f("dealstage", "EQ", value="closedlost")],
            [_f("hubspot_owner_id", "EQ", value="201"), _f("deal_currency_code", "EQ", value="EUR")],
        ],
        lambda d: d["stage_id"] == "closedlost" or (d["owner_id"] == "201" and d["currency"] == "EUR"),
    ),
    ("contains_token", [[_f("dealname", "CONTAINS_TOKEN", value="*12*")]], lambda d: "12" in d["name"]),
]


@pytest.mark.parametrize(("groups", "expected"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES])
def test_search_filters_match_the_store(
    client: hubspot.Client, groups: list[list[dict[str, Any]]], expected: Callable[[dict[str, Any]], bool]
) -> None:
    body = {"limit": 200, "filterGroups": [{"filters": g} for g in groups]}

    ids = [r.id for r in search_all(client, body)]

    want = [d["id"] for d in LIVE if expected(d)]
    assert want, "the case must select something"
    assert ids == want


def test_hs_object_id_compares_numerically(client: hubspot.Client) -> None:
    request = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="hs_object_id", operator="GT", value="998")])],
        sorts=["hs_object_id"],
        limit=3,
    )

    ids = [r.id for r in client.crm.deals.search_api.do_search(request).results]

    assert ids == ["999", "1000", "1001"]  # as text '1000' < '999'


@pytest.mark.parametrize("since", [ms(BASE + timedelta(minutes=100)), "2024-05-01T13:40:00Z", "2024-05-01T15:40+02:00"])
def test_incremental_window_sorted_by_modification(client: hubspot.Client, since: str) -> None:
    """The connector's pattern: GTE a watermark, ascending, ties broken by id."""
    body = {
        "limit": 100,
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["dealname"],
        "filterGroups": [{"filters": [_f("hs_lastmodifieddate", "GTE", value=since)]}],
    }

    results = search_all(client, body)

    watermark = iso_utc(BASE + timedelta(minutes=100))
    want = sorted((d for d in LIVE if d["modified_at"] >= watermark), key=lambda d: (d["modified_at"], d["seq"]))
    assert [r.id for r in results] == [d["id"] for d in want]
    assert [r.properties["hs_lastmodifieddate"] for r in results] == [d["modified_at"] for d in want]


def test_descending_sort_as_a_minus_string(client: hubspot.Client) -> None:
    page = client.crm.deals.search_api.do_search(PublicObjectSearchRequest(sorts=["-hs_object_id"], limit=2))

    assert [r.id for r in page.results] == ["1149", "1148"]  # 1150 is archived


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"limit": 201}, "limit"),
        ({"filterGroups": [{"filters": [_f("dealname", "HAS_PROPERTY")]}] * 6}, "filterGroups"),
        ({"filterGroups": [{"filters": [_f("dealname", "HAS_PROPERTY")] * 11}]}, "filters per group"),
        ({"filterGroups": [{"filters": [_f("nope", "EQ", value="x")]}]}, "'nope' does not exist"),
        ({"filterGroups": [{"filters": [_f("createdate", "GT", value="yesterday")]}]}, "epoch milliseconds"),
        ({"filterGroups": [{"filters": [_f("hs_object_id", "GT", value="abc")]}]}, "not a valid number"),
        ({"filterGroups": [{"filters": [_f("dealstage", "IN", values=[])]}]}, "non-empty values"),
        ({"sorts": ["createdate", "dealname"]}, "Only one sort"),
        ({"after": "x"}, "after must be an integer"),
    ],
)
def test_search_rejects_what_hubspot_rejects(client: hubspot.Client, body: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiException) as caught:
        client.crm.deals.search_api.do_search(public_object_search_request=body)

    assert caught.value.status == 400
    error = json.loads(caught.value.body)
    assert error["category"] == "VALIDATION_ERROR"
    assert message in error["message"]
    assert error["correlationId"]


def test_search_never_returns_archived_records(client: hubspot.Client) -> None:
    archived = {d["id"] for d in DEALS if d["deleted_at"]}
    request = {"limit": 200, "filterGroups": [{"filters": [_f("hs_object_id", "IN", values=sorted(archived))]}]}

    page = client.crm.deals.search_api.do_search(public_object_search_request=request)

    assert archived
    assert (page.total, page.results) == (0, [])


@pytest.mark.parametrize(
    ("obj", "subject_property", "kind"),
    [
        ("calls", "hs_call_title", "call"),
        ("emails", "hs_email_subject", "email"),
        ("meetings", "hs_meeting_title", "meeting"),
        ("tasks", "hs_task_subject", "task"),
        ("notes", "hs_note_body", "note"),
    ],
)
def test_search_engagements_by_type(client: hubspot.Client, obj: str, subject_property: str, kind: str) -> None:
    body = {"properties": [subject_property, "hs_timestamp", "hubspot_owner_id"], "limit": 100}

    results = search_all(client, body, obj)

    live = [a for a in activities() if a["type"] == kind and a["deleted_at"] is None]
    assert [r.id for r in results] == [a["id"] for a in live]
    assert results[0].properties[subject_property] == live[0]["subject"]
    assert results[0].properties["hs_timestamp"] == live[0]["occurred_at"]
    assert {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"} <= set(results[0].properties)


def test_search_contacts_by_owner_assignment(client: hubspot.Client) -> None:
    since = iso_utc(BASE - timedelta(days=10))
    body = {
        "limit": 50,
        "properties": ["hubspot_owner_id", "hubspot_owner_assigneddate"],
        "filterGroups": [{"filters": [_f("hubspot_owner_assigneddate", "GTE", value=since)]}],
    }

    results = search_all(client, body, "contacts")

    want = [c for c in contacts() if c["deleted_at"] is None and c["assigned_at"] >= since]
    assert [r.id for r in results] == [c["id"] for c in want]
    assert {"createdate", "lastmodifieddate", "hs_object_id"} <= set(results[0].properties)


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHubSpot]:
    store = Store(tmp_path_factory.mktemp("hubspot-big") / "h.db")
    stamp = iso_utc(BASE)
    rows = [
        {"crm": "hubspot", "id": str(s), "seq": s, "created_at": stamp, "modified_at": stamp} for s in range(1, 10_051)
    ]
    store.insert_many("deals", rows)
    with FakeHubSpot(store, TOKEN) as fake:
        yield fake


def test_search_stops_at_ten_thousand_results(big_server: FakeHubSpot) -> None:
    api = plain_client(big_server).crm.deals.search_api

    last = api.do_search(PublicObjectSearchRequest(limit=200, after="9800"))
    assert last.total == 10_050
    assert [r.id for r in last.results][-1] == "10000"
    assert last.paging.next.after == "10000"  # HubSpot still offers the page it refuses

    for after, limit in [("10000", 200), ("9900", 200)]:
        with pytest.raises(ApiException) as caught:
            api.do_search(PublicObjectSearchRequest(limit=limit, after=after))
        assert caught.value.status == 400
        assert "10000 results" in json.loads(caught.value.body)["message"]


# -- list / read ---------------------------------------------------------------------------


def test_list_pages_with_keyset_after(client: hubspot.Client) -> None:
    api = client.crm.deals.basic_api
    seen, after = [], None
    while True:
        page = api.get_page(limit=100, after=after, properties=["dealname", "amount"])
        seen.extend(page.results)
        if page.paging is None:
            break
        after = page.paging.next.after

    assert [r.id for r in seen] == [d["id"] for d in LIVE]
    assert seen[0].properties == {
        "dealname": "Deal 1",
        "amount": "1000",
        "createdate": LIVE[0]["created_at"],
        "hs_lastmodifieddate": LIVE[0]["modified_at"],
        "hs_object_id": "501",
    }


def test_archived_records_come_only_from_list_with_archived_true(client: hubspot.Client) -> None:
    page = client.crm.deals.basic_api.get_page(limit=100, archived=True)

    archived = [d for d in DEALS if d["deleted_at"]]
    assert [r.id for r in page.results] == [d["id"] for d in archived]
    assert all(r.archived for r in page.results)
    assert page.results[0].archived_at == datetime.fromisoformat(archived[0]["deleted_at"])


def test_properties_with_history_come_newest_first_fifty_a_page(client: hubspot.Client) -> None:
    page = client.crm.deals.basic_api.get_page(limit=100, properties_with_history=["dealstage", "amount"])

    assert len(page.results) == 50
    deal = page.results[2]  # seq 3: appointmentscheduled -> ... -> closedwon
    stages = [(v.value, v.timestamp) for v in deal.properties_with_history["dealstage"]]
    created = datetime.fromisoformat(DEALS[2]["created_at"])
    assert stages == [
        ("closedwon", created + timedelta(hours=3)),
        ("presentationscheduled", created + timedelta(hours=2)),
        ("qualifiedtobuy", created + timedelta(hours=1)),
        ("appointmentscheduled", created),
    ]
    first_amounts = [v.value for v in page.results[0].properties_with_history["amount"]]
    assert first_amounts == ["1000", "500"]


def test_batch_read_with_property_history(client: hubspot.Client) -> None:
    request = BatchReadInputSimplePublicObjectId(
        inputs=[{"id": "503"}, {"id": "501"}], properties=["dealstage"], properties_with_history=["dealstage"]
    )

    response = client.crm.deals.batch_api.read(request)

    assert response.status == "COMPLETE"
    by_id = {r.id: r for r in response.results}
    assert set(by_id) == {"501", "503"}
    assert by_id["503"].properties["dealstage"] == "closedwon"
    created = datetime.fromisoformat(DEALS[2]["created_at"])
    assert [(v.value, v.timestamp) for v in by_id["503"].properties_with_history["dealstage"]] == [
        ("closedwon", created + timedelta(hours=3)),
        ("presentationscheduled", created + timedelta(hours=2)),
        ("qualifiedtobuy", created + timedelta(hours=1)),
        ("appointmentscheduled", created),
    ]


@pytest.mark.parametrize(
    ("archived", "found", "missing"), [(False, ["501"], ["550", "99999"]), (True, ["550"], ["501", "99999"])]
)
def test_batch_read_reports_ids_it_cannot_return(
    server: FakeHubSpot, archived: bool, found: list[str], missing: list[str]
) -> None:
    body = json.dumps({"inputs": [{"id": "501"}, {"id": "550"}, {"id": "99999"}], "properties": ["dealname"]})

    status, answer = raw(server, "POST", f"/crm/v3/objects/deals/batch/read?archived={archived}", body.encode())

    assert status == 207
    assert [r["id"] for r in answer["results"]] == found
    assert answer["numErrors"] == 1
    assert answer["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert answer["errors"][0]["context"] == {"ids": missing}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{"id": str(i)} for i in range(101)]}, "at most 100 inputs"),
        ({"inputs": [{"nope": 1}]}, "inputs must be"),
        ({"inputs": [{"id": "501"}], "idProperty": "email"}, "idProperty"),
        ({"inputs": [{"id": "501"}], "propertiesWithHistory": "dealstage"}, "list of property names"),
    ],
)
def test_batch_read_refuses_what_hubspot_refuses(server: FakeHubSpot, body: dict[str, Any], message: str) -> None:
    status, answer = raw(server, "POST", "/crm/v3/objects/deals/batch/read", json.dumps(body).encode())

    assert status == 400
    assert message in answer["message"]


def test_contact_conversion_date_comes_from_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    converted = [c for c in contacts() if c["converted_deal_id"]][:1]
    store.insert_many("leads", [{**converted[0], "lifecycle_stage": "opportunity", "converted_at": iso_utc(BASE)}])
    with FakeHubSpot(store, TOKEN) as fake:
        contact = plain_client(fake).crm.contacts.basic_api.get_by_id(
            converted[0]["id"], properties=["hs_lifecyclestage_opportunity_date", "lifecyclestage"]
        )

    assert contact.properties["hs_lifecyclestage_opportunity_date"] == iso_utc(BASE)
    assert contact.properties["lifecyclestage"] == "opportunity"


def test_get_by_id_with_stage_timing(client: hubspot.Client) -> None:
    deal = client.crm.deals.basic_api.get_by_id(
        "503", properties=["dealstage", "hs_v2_date_entered_closedwon", "hs_v2_date_entered_qualifiedtobuy"]
    )

    created = datetime.fromisoformat(DEALS[2]["created_at"])
    assert deal.properties["dealstage"] == "closedwon"
    assert deal.properties["hs_v2_date_entered_closedwon"] == iso_utc(created + timedelta(hours=3))
    assert deal.properties["hs_v2_date_entered_qualifiedtobuy"] == iso_utc(created + timedelta(hours=1))


@pytest.mark.parametrize(("deal_id", "archived"), [("99999", False), ("550", False), ("501", True)])
def test_get_by_id_not_found(client: hubspot.Client, deal_id: str, archived: bool) -> None:
    with pytest.raises(NotFoundException):
        client.crm.deals.basic_api.get_by_id(deal_id, archived=archived)


def test_list_limit_over_one_hundred_is_refused(client: hubspot.Client) -> None:
    with pytest.raises(ApiException) as caught:
        client.crm.deals.basic_api.get_page(limit=101)

    assert caught.value.status == 400


# -- owners, pipelines, associations ---------------------------------------------------------


def test_owners_with_their_team(client: hubspot.Client) -> None:
    owners = client.crm.owners.owners_api.get_page()
    archived = client.crm.owners.owners_api.get_page(archived=True)

    assert [(o.id, [(t.id, t.name, t.primary) for t in o.teams]) for o in owners.results] == [
        ("201", [("101", "East", True)]),
        ("202", [("101", "East", True)]),
        ("203", [("102", "West", True)]),
    ]
    assert owners.results[0].email == "rep201@example.com"
    assert [(o.id, o.archived) for o in archived.results] == [("204", True), ("205", True)]


def test_owners_page_with_after(client: hubspot.Client) -> None:
    api = client.crm.owners.owners_api

    first = api.get_page(limit=2)
    rest = api.get_page(limit=2, after=first.paging.next.after)

    assert [o.id for o in first.results] + [o.id for o in rest.results] == ["201", "202", "203"]
    assert rest.paging is None


def test_pipelines_with_stage_metadata(client: hubspot.Client) -> None:
    pipelines = client.crm.pipelines.pipelines_api.get_all("deals").results
    one = client.crm.pipelines.pipelines_api.get_by_id("deals", "default")

    assert [p.id for p in pipelines] == ["default", "renewals"]
    # As the store was filled (see fill): the first three stages open, then won and lost.
    assert [(s.id, s.metadata) for s in one.stages] == [
        (stage, {"isClosed": str(i >= 3).lower(), "probability": str(PROBABILITY.get(stage, 0.0))})
        for i, stage in enumerate(STAGES)
    ]


def _links(src: str, dst: str) -> dict[str, list[int]]:
    """The expected associations, computed from the rows independently of the server."""
    live_deals = {d["id"] for d in LIVE}
    live_contacts = {c["id"]: c for c in contacts() if c["deleted_at"] is None}
    pairs: set[tuple[str, str]] = set()  # (deal or engagement, contact or deal) in canonical direction
    canonical = (src, dst)
    if {src, dst} == {"deals", "contacts"}:
        pairs |= {(d["id"], d["lead_id"]) for d in LIVE if d["lead_id"] in live_contacts}
        pairs |= {
            (c["converted_deal_id"], c["id"]) for c in live_contacts.values() if c["converted_deal_id"] in live_deals
        }
        canonical = ("deals", "contacts")
    else:
        engagement = src if src not in ("deals", "contacts") else dst
        other = dst if engagement == src else src
        column = "deal_id" if other == "deals" else "lead_id"
        targets = live_deals if other == "deals" else set(live_contacts)
        for a in activities():
            if a["deleted_at"] is None and f"{a['type']}s" == engagement and a[column] in targets:
                pairs.add((a["id"], a[column]))
        canonical = (engagement, other)
    out: dict[str, list[int]] = {}
    for a, b in pairs:
        frm, to = (a, b) if canonical == (src, dst) else (b, a)
        out.setdefault(frm, []).append(int(to))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize(
    ("src", "dst", "type_id"),
    [
        ("deals", "contacts", 3),
        ("contacts", "deals", 4),
        ("deals", "calls", 205),
        ("calls", "deals", 206),
        ("contacts", "notes", 201),
        ("meetings", "contacts", 200),
    ],
)
def test_association_batch_read(client: hubspot.Client, src: str, dst: str, type_id: int) -> None:
    expected = _links(src, dst)
    without = "1149" if src == "deals" else ("2099" if src == "contacts" else "9001")
    inputs = [*sorted(expected), without]

    response = client.crm.associations.v4.batch_api.get_page(
        src, dst, BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": i} for i in inputs])
    )

    got = {r._from.id: [int(t.to_object_id) for t in r.to] for r in response.results}
    assert expected
    assert got == expected
    assert {t.association_types[0].type_id for r in response.results for t in r.to} == {type_id}
    assert [e.context["fromObjectId"] for e in response.errors] == [[without]]
    assert response.errors[0].sub_category == "crm.associations.NO_ASSOCIATIONS_FOUND"


def test_association_batch_read_refuses_more_than_a_thousand_inputs(client: hubspot.Client) -> None:
    request = BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": str(i)} for i in range(1001)])

    with pytest.raises(AssociationsApiException) as caught:
        client.crm.associations.v4.batch_api.get_page("deals", "contacts", request)

    assert caught.value.status == 400


# -- auth, errors, rate limits, faults ---------------------------------------------------------


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_bad_or_missing_token_is_401(server: FakeHubSpot, token: str | None) -> None:
    bad = hubspot.Client.create(access_token=token, host=server.base_url, retry=False)

    with pytest.raises(UnauthorizedException) as caught:
        bad.crm.deals.basic_api.get_page()

    body = json.loads(caught.value.body)
    assert (caught.value.status, body["category"]) == (401, "INVALID_AUTHENTICATION")
    assert body["message"].startswith("Authentication credentials not found.")


def raw(server: FakeHubSpot, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.base_url + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/crm/v3/objects/widgets", None, 400, "Unable to infer object type from: widgets"),
        ("POST", "/crm/v3/objects/widgets/search", b"{}", 400, "Unable to infer object type from: widgets"),
        ("GET", "/crm/v3/nothing/here", None, 404, "Resource not found"),
        ("POST", "/crm/v3/objects/deals/search", b'{"limit": 1,', 400, "Invalid input JSON"),
        ("GET", "/crm/v3/objects/deals/abc", None, 404, "objectId are usually numeric"),
        ("DELETE", "/crm/v3/owners/", None, 405, "not supported"),
    ],
)
def test_error_bodies(
    server: FakeHubSpot, method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    got_status, got = raw(server, method, path, body)

    assert got_status == status
    assert got["status"] == "error"
    assert message in got["message"]


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited(server: FakeHubSpot) -> Iterator[tuple[FakeHubSpot, SteppedClock]]:
    clock = SteppedClock()
    limits = RateLimits(burst=3, burst_window=10.0, search_per_second=2)
    with FakeHubSpot(server.store, TOKEN, rate_limits=limits, clock=clock) as fake:
        yield fake, clock


def test_burst_limit_answers_429_until_the_window_slides(limited: tuple[FakeHubSpot, SteppedClock]) -> None:
    fake, clock = limited
    api = plain_client(fake).crm.owners.owners_api

    remaining = [api.get_page_with_http_info()[2]["X-HubSpot-RateLimit-Remaining"] for _ in range(3)]
    clock.now += 4
    with pytest.raises(OwnersApiException) as caught:
        api.get_page()
    clock.now += 6  # the first request is now 10 s old
    api.get_page()

    assert remaining == ["2", "1", "0"]
    error = caught.value
    assert error.status == 429
    assert error.headers["Retry-After"] == "6"
    assert error.headers["X-HubSpot-RateLimit-Max"] == "3"
    assert json.loads(error.body) | {"correlationId": "-"} == {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "category": "RATE_LIMITS",
        "policyName": "TEN_SECONDLY_ROLLING",
        "correlationId": "-",
    }


def test_search_has_its_own_secondly_limit(limited: tuple[FakeHubSpot, SteppedClock]) -> None:
    fake, clock = limited
    api = plain_client(fake).crm.deals.search_api

    for _ in range(2):
        api.do_search(PublicObjectSearchRequest(limit=1))
    with pytest.raises(ApiException) as caught:
        api.do_search(PublicObjectSearchRequest(limit=1))
    clock.now += 1
    api.do_search(PublicObjectSearchRequest(limit=1))

    assert caught.value.status == 429
    assert caught.value.headers["X-HubSpot-RateLimit-Secondly"] == "2"
    assert json.loads(caught.value.body)["message"] == "You have reached your secondly limit."


def retrying_client(server: FakeHubSpot) -> hubspot.Client:
    retry = urllib3.Retry(total=5, status_forcelist=(429, 502, 503), allowed_methods=None, backoff_factor=0.01)
    return hubspot.Client.create(access_token=TOKEN, host=server.base_url, retry=retry)


def test_sdk_retry_passes_through_429s_on_search(server: FakeHubSpot) -> None:
    server.faults.arm("rate_limit", path="/search", times=2, retry_after=0)
    before = len(server.requests)

    page = retrying_client(server).crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=5))

    assert [r.id for r in page.results] == [d["id"] for d in LIVE[:5]]
    assert [p for _, p in server.requests[before:]] == ["/crm/v3/objects/deals/search"] * 3


def test_sdk_retry_waits_out_a_real_secondly_window(server: FakeHubSpot) -> None:
    limits = RateLimits(search_per_second=1)
    with FakeHubSpot(server.store, TOKEN, rate_limits=limits) as fake:
        api = retrying_client(fake).crm.deals.search_api
        pages = [api.do_search(PublicObjectSearchRequest(limit=1)) for _ in range(2)]  # the 2nd waits Retry-After: 1

    assert [p.results[0].id for p in pages] == ["501", "501"]
    assert [p for _, p in fake.requests].count("/crm/v3/objects/deals/search") == 3


@pytest.mark.parametrize(
    ("fault", "error", "status", "category"),
    [
        ({"kind": "server_error", "status": 503}, ServiceException, 503, None),
        ({"kind": "expired_session"}, UnauthorizedException, 401, "EXPIRED_AUTHENTICATION"),
        ({"kind": "rate_limit"}, ApiException, 429, "RATE_LIMITS"),
        ({"kind": "request_limit"}, ApiException, 429, "RATE_LIMITS"),
    ],
)
def test_faults_surface_as_sdk_exceptions(
    server: FakeHubSpot,
    client: hubspot.Client,
    fault: dict[str, Any],
    error: type[Exception],
    status: int,
    category: str | None,
) -> None:
    server.faults.arm(**fault, path="/crm/v3/objects/deals")

    with pytest.raises(error) as caught:
        client.crm.deals.basic_api.get_page()

    assert caught.value.status == status
    assert json.loads(caught.value.body).get("category") == category


def test_truncated_json_reaches_the_sdk_as_an_empty_page(server: FakeHubSpot, client: hubspot.Client) -> None:
    """hubspot-api-client 12 turns off client-side validation: a body cut in half is not an
    exception but a page whose total and results are None. Callers must check."""
    server.faults.arm("truncate", path="/search")

    page = client.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=50))

    assert (page.total, page.results, page.paging) == (None, None, None)


def test_sdk_default_retry_covers_get_but_not_search(server: FakeHubSpot) -> None:
    default = hubspot.Client.create(access_token=TOKEN, host=server.base_url)
    server.faults.arm("rate_limit", path="/crm/v3/objects/deals\\?", retry_after=0)
    server.faults.arm("rate_limit", path="/search", retry_after=0)

    listed = default.crm.deals.basic_api.get_page(limit=1)
    with pytest.raises(ApiException) as caught:
        default.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=1))

    assert [r.id for r in listed.results] == ["501"]
    assert caught.value.status == 429
    assert server.faults.pending == 0


def test_retries_exhausted_on_503_raise_max_retry_error(server: FakeHubSpot) -> None:
    server.faults.arm("server_error", status=503, path="/search", times=10)

    with pytest.raises(urllib3.exceptions.MaxRetryError):
        retrying_client(server).crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=1))
