"""Changes between two syncs, for incremental-sync tests: edit, add and delete deals "now".

"Now" is the store's clock. Edits go through ``Store.update`` (which moves the modification
stamp) and write the matching ``deal_history`` rows; new deals come with a stage change and
activities, all stamped now; deletions are the CRM's own soft delete (``Store.delete``).
The summary lists every id written, so a test can check that a sync picked up exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.company_catalog import (
    CRMS,
    PRODUCTS,
    SALES_MANAGER,
    Rng,
    company_name,
    list_price,
    main_pipeline,
    pipelines_of,
    record_id,
)
from sandbox.company_sink import Sink
from sandbox.store import Store, iso_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROBES_PER_DEAL = 50


@dataclass(frozen=True)
class MutationSummary:
    """Ids written by one ``mutate`` call, per CRM."""

    changed: dict[str, tuple[str, ...]]  # deals whose amount, stage or close date changed
    added: dict[str, tuple[str, ...]]  # new deals
    deleted: dict[str, tuple[str, ...]]  # soft-deleted deals
    history: dict[str, tuple[str, ...]]  # new deal_history rows (of changed and added deals)
    activities: dict[str, tuple[str, ...]]  # new activities (of added deals)

    def deals(self, crm: str) -> set[str]:
        """Every deal this mutation touched in ``crm``."""
        return {*self.changed.get(crm, ()), *self.added.get(crm, ()), *self.deleted.get(crm, ())}


def mutate(
    store: Store, *, seed: int, changed_fraction: float, added: int, deleted: int, crm: str | None = None
) -> MutationSummary:
    """Change ``changed_fraction`` of the live deals, add ``added`` and soft-delete ``deleted`` deals,
    in each CRM (or only ``crm``). Edited and deleted deals are distinct live deals."""
    if crm is not None and crm not in CRMS:
        raise ValueError(f"unknown crm {crm!r}; expected one of {', '.join(CRMS)}")
    parts: dict[str, dict[str, tuple[str, ...]]] = {
        k: {} for k in ("changed", "added", "deleted", "history", "activities")
    }
    for name in CRMS if crm is None else (crm,):
        result = _Mutation(store, name, Rng(f"{seed}:mutate:{name}")).run(changed_fraction, added, deleted)
        for key, ids in result.items():
            parts[key][name] = tuple(ids)
    return MutationSummary(**parts)


class _Mutation:
    def __init__(self, store: Store, crm: str, rng: Rng) -> None:
        self.store, self.crm, self.rng = store, crm, rng
        now = store.clock()
        self.now = iso_utc(now)
        self.now_ms = (now - _EPOCH) // timedelta(milliseconds=1)
        self.today = now.astimezone(UTC).date()
        self.sink = Sink(store)
        for table in ("deals", "deal_history", "activities"):
            self.sink.continue_after_existing(crm, table)
        self.history: list[str] = []
        self.activities: list[str] = []
        self._reps: list[str] = []

    def run(self, changed_fraction: float, added: int, deleted: int) -> dict[str, list[str]]:
        live = self.store.count("deals", self.crm, "deleted_at IS NULL")
        picked = self._pick_live(round(changed_fraction * live) + deleted)
        to_change, to_delete = picked[: len(picked) - deleted], picked[len(picked) - deleted :]
        for row in to_change:
            self._change(row)
        new = [self._add() for _ in range(added)]
        self.sink.flush()
        self.store.delete("deals", self.crm, [r["id"] for r in to_delete])
        return {
            "changed": [r["id"] for r in to_change],
            "added": new,
            "deleted": [r["id"] for r in to_delete],
            "history": self.history,
            "activities": self.activities,
        }

    def _pick_live(self, wanted: int) -> list[Any]:
        """Distinct live deals drawn at random by seq (never a scan of the whole table)."""
        conn = self.store.connect()
        top = self.store.next_seq("deals", self.crm) - 1
        picked, seen = [], set()
        for _ in range(PROBES_PER_DEAL * wanted):
            if len(picked) == wanted or top < 1:
                break
            seq = self.rng.randint(1, top)
            if seq in seen:
                continue
            seen.add(seq)
            row = conn.execute(
                "SELECT * FROM deals WHERE crm = ? AND seq = ? AND deleted_at IS NULL", (self.crm, seq)
            ).fetchone()
            if row is not None:
                picked.append(row)
        return picked

    def _log(self, deal_id: str, field: str, old: str | None, new: str) -> None:
        seq = self.sink.next_seq(self.crm, "deal_history")
        history_id = record_id(self.crm, "deal_history", seq)
        self.history.append(history_id)
        self.sink.add(
            "deal_history",
            {
                "crm": self.crm,
                "id": history_id,
                "seq": seq,
                "deal_id": deal_id,
                "field": field,
                "old_value": old,
                "new_value": new,
                "changed_at": self.now,
            },
        )

    def _change(self, row: Any) -> None:
        pipeline = next((p for p in pipelines_of(self.crm) if p.id == row["pipeline_id"]), None)
        keys = [s.key for s in pipeline.stages] if pipeline else []
        movable = not row["is_closed"] and row["stage_id"] in keys
        what = self.rng.choices(("stage", "amount", "close_date"), (0.4, 0.3, 0.3) if movable else (0, 0.5, 0.5))[0]
        changes: dict[str, Any] = {}
        if what == "stage" and pipeline is not None:
            index = pipeline.index(row["stage_id"])
            target = pipeline.stages[index + 1 if self.rng.random() < 0.7 else pipeline.lost]
            changes = {"stage_id": target.key, "stage_entered_at": self.now}
            self._log(row["id"], "stage", row["stage_id"], target.key)
            if target.is_closed:
                changes.update(is_closed=1, is_won=int(target.is_won), closed_at=self.now)
                changes["close_date"] = self.today.isoformat()
                if row["close_date"] != changes["close_date"]:
                    self._log(row["id"], "close_date", row["close_date"], changes["close_date"])
        elif what == "amount":
            try:
                old = float(row["amount"])
            except (TypeError, ValueError):
                old = 0.0
            if not 0 < old < 1e9:  # a dirty amount gets fixed by the rep
                old = 10_000.0
            changes = {"amount": str(max(1, round(old * self.rng.uniform(0.7, 1.4))))}
            self._log(row["id"], "amount", row["amount"], changes["amount"])
        else:
            try:
                old_day = max(date.fromisoformat(row["close_date"]), self.today)
            except (TypeError, ValueError):
                old_day = self.today
            changes = {"close_date": (old_day + timedelta(days=self.rng.randint(7, 30))).isoformat()}
            self._log(row["id"], "close_date", row["close_date"], changes["close_date"])
        self.store.update("deals", self.crm, [row["id"]], **changes)

    def _add(self) -> str:
        conn = self.store.connect()
        if not self._reps:
            self._reps = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM users WHERE crm = ? AND title != ? AND deleted_at IS NULL AND is_active = 1 "
                    "ORDER BY seq",
                    (self.crm, SALES_MANAGER),
                )
            ]
        owner = self.rng.choice(self._reps)
        currency = conn.execute(
            "SELECT currency FROM deals WHERE crm = ? AND owner_id = ? AND currency IS NOT NULL LIMIT 1",
            (self.crm, owner),
        ).fetchone()
        pipeline = main_pipeline(self.crm)
        seq = self.sink.next_seq(self.crm, "deals")
        deal_id = record_id(self.crm, "deals", seq)
        first, second = pipeline.stages[0].key, pipeline.stages[1].key
        self._log(deal_id, "stage", first, second)
        for _ in range(self.rng.randint(1, 3)):
            self.activities.append(self.sink.activity(self.rng, self.crm, owner, self.now_ms, deal_id, None))
        code = currency[0] if currency else "USD"
        self.sink.add(
            "deals",
            {
                "crm": self.crm,
                "id": deal_id,
                "seq": seq,
                "name": f"{company_name(self.rng)} - {self.rng.choice(PRODUCTS)}",
                "owner_id": owner,
                "amount": str(list_price(25_000 * self.rng.lognormvariate(0, 0.9), code)),
                "currency": code,
                "pipeline_id": pipeline.id,
                "stage_id": second,
                "close_date": (self.today + timedelta(days=self.rng.randint(30, 90))).isoformat(),
                "is_closed": 0,
                "is_won": 0,
                "closed_at": None,
                "stage_entered_at": self.now,
                "last_activity_at": self.now,
                "lead_id": None,
                "created_at": self.now,
                "modified_at": self.now,
                "deleted_at": None,
            },
        )
        return deal_id
