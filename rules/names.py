"""The team, stage, pipeline and rep names a rule file may mention, as the warehouse knows them.

A typo in a scope (``teams: [Enterprise West]`` for 'Enterprise - West') would silently make a
rule look at nobody, which reads as "all is well". So the loader checks every name against the
warehouse when it has data and suggests the closest known one.

Kinds mark the params fields that hold such names with :class:`NameOf`, for example
``stages: tuple[Annotated[str, NameOf("stage")], ...] = ()`` or
``limit_days: dict[Annotated[str, NameOf("stage")], float]``; the loader checks those too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, select

from models.tables import reps, stages

NameKind = Literal["team", "stage", "pipeline", "rep"]


@dataclass(frozen=True)
class NameOf:
    """Marks a params field (``Annotated[str, NameOf("stage")]``) as naming a warehouse object."""

    kind: NameKind


@dataclass(frozen=True)
class WarehouseNames:
    """Known names per kind; an empty set means "no data yet": that kind is not checked."""

    teams: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()  # labels and api names (HubSpot stores ids such as 'closedwon')
    pipelines: frozenset[str] = frozenset()
    reps: frozenset[str] = frozenset()  # names and e-mail addresses

    def known(self, kind: NameKind) -> frozenset[str]:
        return {"team": self.teams, "stage": self.stages, "pipeline": self.pipelines, "rep": self.reps}[kind]

    def problem(self, kind: NameKind, name: str) -> str | None:
        """None when ``name`` is known (or nothing of its kind is); else what is wrong and a suggestion."""
        known = self.known(kind)
        if not known or name in known:
            return None
        by_fold = {k.casefold(): k for k in sorted(known)}
        guess = by_fold.get(name.casefold())
        if guess is None:
            close = difflib.get_close_matches(name.casefold(), list(by_fold), n=1, cutoff=0.6)
            containing = [k for k in by_fold if name.casefold() in k]
            found = close[0] if close else containing[0] if len(containing) == 1 else None
            guess = by_fold[found] if found else None
        if guess:
            hint = f"did you mean '{guess}'?"
        elif len(known) <= 12:
            hint = "expected one of: " + ", ".join(sorted(known))
        else:
            hint = f"expected one of the {len(known)} {kind}s in the warehouse"
        return f"unknown {kind} '{name}'; {hint}"


def warehouse_names(conn: Connection) -> WarehouseNames:
    """Read the names rule files may use (deleted reps excluded: a scope naming one is stale)."""
    live = reps.c.deleted_at.is_(None)
    teams = conn.execute(select(reps.c.team).where(live, reps.c.team.is_not(None)).distinct()).scalars()
    rep_rows = conn.execute(select(reps.c.name, reps.c.email).where(live)).all()
    stage_rows = conn.execute(select(stages.c.label, stages.c.api_name)).all()
    pipelines = conn.execute(select(stages.c.pipeline).distinct()).scalars()
    return WarehouseNames(
        teams=frozenset(teams),
        stages=frozenset(n for row in stage_rows for n in row if n),
        pipelines=frozenset(pipelines),
        reps=frozenset(n for row in rep_rows for n in row if n),
    )
