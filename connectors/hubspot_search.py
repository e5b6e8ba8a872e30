"""Reading every record modified since a moment, in ascending modification order, through
HubSpot's search API, whatever its 10,000-result cap and however many records share a stamp.

Why not page with ``after``: ``after`` is an offset, so a record modified while we read
moves to the end and shifts the rest back by one (one record silently skipped), and no
query may page past 10,000 results. Instead every page is a fresh query that starts
where the previous page ended (a keyset on the modification stamp):

- ask for ``stamp >= last stamp`` sorted by stamp; records of the last stamp that the
  previous page already gave are dropped (HubSpot orders ties arbitrarily, so they are
  remembered by id, not by position);
- when one stamp fills a whole page (a bulk import or workflow touching thousands of
  records in the same millisecond), that stamp's records are read by id instead
  (``stamp == S and hs_object_id > last id``, sorted by id), then reading resumes with
  ``stamp > S``.

Each query starts at offset 0, so the cap is never reached, and each round makes progress,
so the read ends. A record modified during the read comes again later with its new stamp
(the engine's upsert keeps the newest version).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from connectors.errors import StreamFailed
from connectors.hubspot_client import SEARCH_LIMIT, HubSpotClient
from connectors.hubspot_values import epoch_ms, instant

Record = dict[str, Any]
Found = tuple[Record, datetime | None]  # a raw search result and its modification stamp (None: unreadable)


def stamp(record: Record, modified_property: str) -> datetime | None:
    """The record's modification stamp (the property, else the record's ``updatedAt``).

    None when neither is readable: that record is bad (the stream quarantines it), not a
    reason to fail the stream on every run. It does not move the keyset.
    """
    for value in (record["properties"].get(modified_property), record.get("updatedAt")):
        moment = instant(value)
        if isinstance(moment, datetime):
            return moment
    return None


def modified_since(
    client: HubSpotClient,
    object_type: str,
    modified_property: str,
    properties: list[str],
    since: datetime | None,
    page_size: int = SEARCH_LIMIT,
) -> Iterator[list[Found]]:
    """Pages of (raw search result, stamp), ascending by ``modified_property``; ``since`` is inclusive (None: all)."""
    reader = _Reader(client, object_type, modified_property, properties, page_size)
    low: tuple[str, int] | None = None if since is None else ("GTE", epoch_ms(since))
    boundary: int | None = None  # the stamp the previous page ended on ...
    given: set[str] = set()  # ... and the ids it gave with that stamp
    while True:
        page = reader.by_stamp(low)
        stamps = [None if moment is None else epoch_ms(moment) for _, moment in page]
        placed = [ms for ms in stamps if ms is not None]
        if len(page) == page_size and len(placed) == len(page) and stamps[0] == stamps[-1]:
            yield from reader.one_stamp(placed[0], given if placed[0] == boundary else set())
            low, boundary, given = ("GT", placed[0]), None, set()
            continue
        fresh = [
            f
            for f, ms in zip(page, stamps, strict=True)
            if ms is None or ms != boundary or str(f[0]["id"]) not in given
        ]
        if fresh:
            yield fresh
        if len(page) < page_size:
            return
        if not placed:
            raise StreamFailed(
                f"a whole page of HubSpot {object_type} has no readable {modified_property}: "
                "the incremental read cannot go on past it"
            )
        boundary = max(placed)
        given = {str(f[0]["id"]) for f, ms in zip(page, stamps, strict=True) if ms == boundary}
        low = ("GTE", boundary)


class _Reader:
    def __init__(
        self, client: HubSpotClient, object_type: str, modified_property: str, properties: list[str], page_size: int
    ) -> None:
        self.client = client
        self.object_type = object_type
        self.modified = modified_property
        self.properties = sorted({*properties, modified_property, "hs_object_id"})
        self.page_size = page_size

    def by_stamp(self, low: tuple[str, int] | None) -> list[Found]:
        filters = [] if low is None else [_filter(self.modified, low[0], low[1])]
        return self._search(filters, self.modified)

    def one_stamp(self, moment: int, skip: set[str]) -> Iterator[list[Found]]:
        """Every record stamped exactly ``moment``, by ascending id, less those in ``skip``."""
        after_id: str | None = None
        while True:
            filters = [_filter(self.modified, "EQ", moment)]
            if after_id is not None:
                filters.append(_filter("hs_object_id", "GT", after_id))
            page = self._search(filters, "hs_object_id")
            fresh = [f for f in page if str(f[0]["id"]) not in skip]
            if fresh:
                yield fresh
            if len(page) < self.page_size:
                return
            after_id = str(page[-1][0]["id"])

    def _search(self, filters: list[dict[str, str]], sort: str) -> list[Found]:
        body = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": self.page_size,
        }
        return [(r, stamp(r, self.modified)) for r in self.client.search(self.object_type, body)]


def _filter(prop: str, operator: str, value: int | str) -> dict[str, str]:
    return {"propertyName": prop, "operator": operator, "value": str(value)}
