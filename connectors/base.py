"""What a connector is: a set of streams, each a declaration plus one page generator.

As in the Singer SDK, a stream declares ``name``, ``primary_key`` and ``replication_key``
and implements one generator, :meth:`Stream.get_pages`, that reads the CRM from a
:class:`StreamContext` and yields pages of items. A connector never touches the
database: the sync engine owns cursors, writes and quarantine.

An item is one of
- a normalized :class:`~models.records.Record` (valid),
- :class:`Rejected`: the CRM sent something that is not a valid record; the engine
  quarantines the raw payload with the reason, and the stream goes on,
- :class:`Deleted`: the CRM says this record was deleted or archived.

Pages must come in ascending replication-key order (ties in any order): the engine
advances the cursor to the largest value of each committed page, and the next run
re-reads from that value inclusively, so order is what makes "nothing lost" hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import ValidationError

from models.records import Record


@dataclass(frozen=True)
class Rejected:
    external_id: str
    payload: Mapping[str, Any]
    reason: str
    replication_value: datetime | None = None


@dataclass(frozen=True)
class Deleted:
    external_id: str
    deleted_at: datetime
    replication_value: datetime | None = None


Item = Record | Rejected | Deleted


@dataclass(frozen=True)
class StreamContext:
    """What one run asks of a stream.

    ``since`` is the inclusive lower bound on the replication key (None: read everything);
    ``started_at`` is the sync's start, the latest instant a cursor may ever record.
    """

    since: datetime | None
    started_at: datetime

    @property
    def full(self) -> bool:
        return self.since is None


class Stream(ABC):
    name: ClassVar[str]
    primary_key: ClassVar[str]
    replication_key: ClassVar[str | None]
    record_model: ClassVar[type[Record]]
    # The warehouse stream the records belong to (several CRM objects may feed one table,
    # e.g. HubSpot calls and emails both feed ``activities``); defaults to ``name``.
    target: ClassVar[str]
    # Column values that single out this stream's rows in a shared table, so a --full run
    # only marks its own unseen rows deleted, e.g. {"type": ("call",)}.
    scope: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    # A small stream read whole on every run (no cursor): rows it no longer yields were deleted.
    reads_whole: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "target" not in cls.__dict__:
            cls.target = cls.name

    @abstractmethod
    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        """Yield pages of items in ascending replication-key order, deletions included."""

    def build(
        self,
        payload: Mapping[str, Any],
        external_id: str,
        replication_value: datetime | Callable[[], datetime | None] | None,
        **fields: Any,
    ):
        """Validate mapped fields into this stream's record, or a Rejected item with a readable reason.

        ``replication_value`` may be a function: it is then called only for a refused record,
        so a stream whose stamp the model parses anyway does not parse it twice per record.
        """
        try:
            return self.record_model.model_validate({"external_id": external_id, **fields})
        except ValidationError as exc:
            value = replication_value() if callable(replication_value) else replication_value
            return Rejected(external_id, payload, readable_reason(exc), value)


class Connector(ABC):
    """One CRM: its name (the ``source`` in the warehouse) and its streams, in sync order."""

    source: ClassVar[str]

    @abstractmethod
    def streams(self) -> list[Stream]:
        """Streams in dependency order (reps and stages before what references them)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close pooled HTTP connections; the connector stays usable (the next request opens new ones).

        The engine calls it before forking a stream worker, so no socket is shared.
        """


def readable_reason(exc: ValidationError) -> str:
    """Pydantic's errors as one line an admin can act on: 'amount: Input should be ... (got '1e15')'."""
    parts = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "record"
        got = err.get("input")
        if got is None and err["type"] != "missing":
            parts.append(f"{field}: is missing (the CRM sent no value)")
            continue
        shown = f" (got {str(got)[:60]!r})" if got is not None and not isinstance(got, dict) else ""
        parts.append(f"{field}: {err['msg']}{shown}")
    return "; ".join(parts)
