"""A rule's ``scope`` as SQL conditions, so every kind narrows the warehouse the same way.

Names are matched as an admin types them, case-insensitively: teams by name (``reps.team``)
or warehouse team id, reps by name, e-mail or warehouse id, pipelines by pipeline id as the
warehouse keeps it (``default`` for Salesforce, HubSpot's pipeline id), sources by CRM name.
An empty list means "all"; an ``exclude_*`` list removes from whatever the include lists
leave. The loader checks the names against the warehouse; here an unknown name simply
matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, FromClause, and_, func, not_, or_, true

from rules.model import Scope


def _lowered(values: Iterable[str]) -> list[str]:
    return [v.strip().lower() for v in values]


def _matches(columns: Iterable[ColumnElement], names: tuple[str, ...]) -> ColumnElement[bool]:
    wanted = _lowered(names)
    return or_(*(func.lower(c).in_(wanted) for c in columns))


def rep_condition(scope: Scope, rep: FromClause) -> ColumnElement[bool]:
    """Which rows of ``reps`` (or an alias of it) the scope keeps: teams, reps and sources."""
    conditions: list[ColumnElement[bool]] = []
    if scope.teams:
        conditions.append(_matches((rep.c.team, rep.c.team_id), scope.teams))
    if scope.exclude_teams:
        # A rep without a team is not in an excluded team.
        excluded = _matches((rep.c.team, rep.c.team_id), scope.exclude_teams)
        conditions.append(or_(rep.c.team_id.is_(None), not_(excluded)))
    if scope.reps:
        conditions.append(_matches((rep.c.name, rep.c.email, rep.c.id), scope.reps))
    if scope.exclude_reps:
        conditions.append(not_(_matches((rep.c.name, func.coalesce(rep.c.email, ""), rep.c.id), scope.exclude_reps)))
    if scope.sources:
        conditions.append(func.lower(rep.c.source).in_(_lowered(scope.sources)))
    return and_(true(), *conditions)


def pipeline_condition(scope: Scope, pipeline: ColumnElement) -> ColumnElement[bool]:
    """Which pipelines the scope keeps, on any column holding a pipeline id."""
    conditions: list[ColumnElement[bool]] = []
    if scope.pipelines:
        conditions.append(_matches((pipeline,), scope.pipelines))
    if scope.exclude_pipelines:
        conditions.append(not_(_matches((pipeline,), scope.exclude_pipelines)))
    return and_(true(), *conditions)


def source_condition(scope: Scope, source: ColumnElement) -> ColumnElement[bool]:
    """Which CRMs the scope keeps, for rows not tied to a rep (stages, pipelines)."""
    if not scope.sources:
        return true()
    return func.lower(source).in_(_lowered(scope.sources))


def deal_side(scope: Scope, deal: FromClause) -> ColumnElement[bool]:
    """The scope's conditions on the deal itself (pipeline, source): with ``rep_condition`` on its owner,
    the whole scope. A rule grouping deals per owner applies this to the deals and the owner's side to the
    few grouped rows."""
    return and_(pipeline_condition(scope, deal.c.pipeline), source_condition(scope, deal.c.source))


def deal_condition(scope: Scope, deal: FromClause, rep: FromClause) -> ColumnElement[bool]:
    """The whole scope for a deal joined to its owner (``rep``): pipeline, source and owner."""
    return and_(deal_side(scope, deal), rep_condition(scope, rep))
