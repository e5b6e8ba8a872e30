"""Deal stage and close-date changes, from HubSpot's property history.

HubSpot has no change object to search: a deal's history of ``dealstage`` / ``closedate``
comes with the deal (``propertiesWithHistory`` in a batch read, newest first, the first
entry being the value the deal was created with). So these streams search the deals
modified since the cursor (ids and stamps only), batch-read their history, and emit one
record per history entry, the first with ``from_stage`` / ``old_date`` empty.

A change record's replication value is its deal's modification stamp (every history
entry is older than it), so pages keep the deals' ascending order. A deal read again
re-emits its whole history under the same stable ids; upserts make that harmless.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from connectors.base import Item, StreamContext
from connectors.hubspot_search import modified_since
from connectors.hubspot_streams import MODIFIED, HubSpotStream
from connectors.hubspot_values import day, epoch_ms, instant, key_part, text
from models.records import CloseDateChangeRecord, StageChangeRecord


class _DealHistoryStream(HubSpotStream):
    replication_key = MODIFIED
    history_property: ClassVar[str]

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        for deals in modified_since(self.client, "deals", MODIFIED, [], context.since):
            ids = [str(deal["id"]) for deal, _ in deals]
            # A deal archived since the search is missing here; the opportunities stream deletes it.
            histories = self.client.histories("deals", ids, self.history_property)
            items: list[Item] = []
            for deal_id, (_, modified) in zip(ids, deals, strict=True):
                items.extend(self.changes(deal_id, histories.get(deal_id, []), modified))
            if items:
                yield items

    def changes(self, deal_id: str, entries: list[dict[str, Any]], modified: datetime | None) -> Iterator[Item]:
        previous = None
        for entry in _oldest_first(entries):
            value = text(entry.get("value"))
            yield self.build(
                {"deal_id": deal_id, "property": self.history_property, **entry},
                _change_id(deal_id, entry),
                modified,
                updated_at=modified,
                opportunity_id=deal_id,
                changed_at=instant(entry.get("timestamp")),
                **self.values(previous, value),
            )
            previous = value

    @abstractmethod
    def values(self, before: Any, after: Any) -> dict[str, Any]:
        """The change's own fields from the property's value before and after."""


class StageChangesStream(_DealHistoryStream):
    name = "stage_changes"
    record_model = StageChangeRecord
    history_property = "dealstage"

    def values(self, before: Any, after: Any) -> dict[str, Any]:
        return {"from_stage": before, "to_stage": after}


class CloseDateChangesStream(_DealHistoryStream):
    name = "close_date_changes"
    record_model = CloseDateChangeRecord
    history_property = "closedate"

    def values(self, before: Any, after: Any) -> dict[str, Any]:
        return {"old_date": day(before), "new_date": day(after)}


def _at_ms(entry: dict[str, Any]) -> int | None:
    moment = instant(entry.get("timestamp"))
    return epoch_ms(moment) if isinstance(moment, datetime) else None


def _oldest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """By time; entries of the same millisecond keep HubSpot's (newest-first) order, reversed."""
    return sorted(reversed(entries), key=_sort_ms)


def _sort_ms(entry: dict[str, Any]) -> int:
    at = _at_ms(entry)
    return -1 if at is None else at  # unreadable stamps first: they are refused anyway


def _change_id(deal_id: str, entry: dict[str, Any]) -> str:
    """Stable across runs: the deal, the change's millisecond and its value (hashed when long)."""
    at = _at_ms(entry)
    return f"{deal_id}:{at if at is not None else key_part(entry.get('timestamp'))}:{key_part(entry.get('value'))}"
