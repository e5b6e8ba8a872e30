"""Associations v4 batch read, answered from the store's foreign keys.

The store keeps one link per relation: a deal's ``lead_id`` (the contact it came from), a
contact's ``converted_deal_id``, and an activity's ``deal_id`` / ``lead_id``. Each link
reads in both directions, with HubSpot's default (HUBSPOT_DEFINED, unlabeled) type id for
that direction. Archived records are never associated.

Shape (https://developers.hubspot.com/docs/api/crm/associations/v4): 200 with
``{"status": "COMPLETE", "results": [{"from": {"id"}, "to": [{"toObjectId", "associationTypes"}]}]}``,
or 207 with ``errors`` when some inputs have nothing associated (subCategory
``crm.associations.NO_ASSOCIATIONS_FOUND``, the shape HubSpot is seen to answer; the SDK
deserialises it although its ``StandardError`` declares ``links`` and ``errors`` required).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from http import HTTPStatus
from typing import Any

from sandbox.hubspot_objects import ObjectSpec
from sandbox.hubspot_search import invalid

MAX_INPUTS = 1000
_ENGAGEMENTS = ("calls", "emails", "meetings", "tasks", "notes")

# (object owning the column, column, object it points at)
_LINKS = [
    ("deals", "lead_id", "contacts"),
    ("contacts", "converted_deal_id", "deals"),
    *((name, "deal_id", "deals") for name in _ENGAGEMENTS),
    *((name, "lead_id", "contacts") for name in _ENGAGEMENTS),
]

# HubSpot's default association type ids, per direction.
TYPE_IDS = {
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("calls", "contacts"): 194,
    ("contacts", "calls"): 193,
    ("calls", "deals"): 206,
    ("deals", "calls"): 205,
    ("emails", "contacts"): 198,
    ("contacts", "emails"): 197,
    ("emails", "deals"): 210,
    ("deals", "emails"): 209,
    ("meetings", "contacts"): 200,
    ("contacts", "meetings"): 199,
    ("meetings", "deals"): 212,
    ("deals", "meetings"): 211,
    ("notes", "contacts"): 202,
    ("contacts", "notes"): 201,
    ("notes", "deals"): 214,
    ("deals", "notes"): 213,
    ("tasks", "contacts"): 204,
    ("contacts", "tasks"): 203,
    ("tasks", "deals"): 216,
    ("deals", "tasks"): 215,
}


def read_associations(
    conn: sqlite3.Connection, src: ObjectSpec, dst: ObjectSpec, body: Any
) -> tuple[HTTPStatus, dict[str, Any]]:
    type_id = TYPE_IDS.get((src.name, dst.name))
    if type_id is None:
        raise invalid(f"The sandbox has no association from {src.name} to {dst.name}")
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and i.get("id") is not None for i in inputs):
        raise invalid('inputs must be a list of {"id": ...}')
    if len(inputs) > MAX_INPUTS:
        raise invalid(f"A batch read takes at most {MAX_INPUTS} inputs, got {len(inputs)}")
    ids = list(dict.fromkeys(str(i["id"]) for i in inputs))
    linked = _linked(conn, src, dst, ids)
    results, errors = [], []
    for from_id in ids:
        targets = sorted(linked.get(from_id, ()), key=_id_order)
        if not targets:
            errors.append(_no_associations(src, dst, from_id))
            continue
        kind = {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}
        to = [{"toObjectId": int(t) if t.isdigit() else t, "associationTypes": [kind]} for t in targets]
        results.append({"from": {"id": from_id}, "to": to})
    body_out: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if not errors:
        return HTTPStatus.OK, body_out
    return HTTPStatus.MULTI_STATUS, {**body_out, "numErrors": len(errors), "errors": errors}


def _rows(spec: ObjectSpec, alias: str) -> str:
    where = f"t.crm = 'hubspot' AND t.deleted_at IS NULL AND {spec.scope}"
    return f"(SELECT * FROM {spec.table} t WHERE {where}) {alias}"


def _linked(conn: sqlite3.Connection, src: ObjectSpec, dst: ObjectSpec, ids: list[str]) -> dict[str, set[str]]:
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    selects = []
    for owner, column, target in _LINKS:
        if (owner, target) == (src.name, dst.name):
            join = f"g.id = f.{column}"
        elif (owner, target) == (dst.name, src.name):
            join = f"g.{column} = f.id"
        else:
            continue
        selects.append(
            f"SELECT f.id, g.id FROM {_rows(src, 'f')} JOIN {_rows(dst, 'g')} ON {join} WHERE f.id IN ({marks})"
        )
    linked: dict[str, set[str]] = defaultdict(set)
    for from_id, to_id in conn.execute(" UNION ".join(selects), ids * len(selects)):
        linked[from_id].add(to_id)
    return linked


def _id_order(object_id: str) -> tuple[int, int | str]:
    return (0, int(object_id)) if object_id.isdigit() else (1, object_id)


def _no_associations(src: ObjectSpec, dst: ObjectSpec, from_id: str) -> dict[str, Any]:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {dst.singular} is associated with {src.singular} {from_id}.",
        "context": {"fromObjectId": [from_id], "fromObjectType": [src.singular], "toObjectType": [dst.singular]},
    }
