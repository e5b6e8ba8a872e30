"""``stage_conversion_drop``: fewer deals move on from a stage than used to.

For every open stage, the deals that left it (stage changes out of it) in the current
window (the last ``window_days`` before T) and in the trailing baseline window (the
``baseline_days`` before that) are split into "advanced" (to a later stage that is not a
lost stage, won included) and the rest (lost, or moved back).

Formula: p1 = a1 / n1 (current), p0 = a0 / n0 (baseline); pooled p = (a1 + a0) / (n1 + n0);
z = (p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0)), one-sided p-value = Phi(z)
(scipy.stats.norm.cdf). Reported when both windows have ``min_exits`` exits, p-value <
``alpha`` and the ratio p1 / p0 reaches the tiers (below; default warn 0.75, critical 0.5).
The finding's value is p1, its baseline p0, its sample size n1; samples are the biggest deals
among the latest 1,000 that left the stage for each stage behind it (lost, or back) in the current
window (``days``: since they left).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field
from scipy.stats import norm
from sqlalchemy import select, union_all

from models.sqltime import days_between
from models.tables import opportunities, reps, stage_changes, stages
from rules import stage_history
from rules.asof import alive_at
from rules.findings import Evaluation, SampleRecord, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.scoping import deal_condition
from rules.stage_label import stage_label
from rules.verdicts import KindParams, deal_sample, share_finding, significant, tiers

# Samples come from the latest exits to each stage behind, not the whole window: a busy stage's 90 days hold
# a fifth of a million exits at the large scale, each a look-up of its deal's amount.
SAMPLED_EXITS = 1000


class Params(KindParams):
    window_days: int = Field(90, ge=7)  # the current window, ending at the evaluation
    baseline_days: int = Field(365, ge=30)  # the trailing window before it
    min_exits: int = Field(20, ge=5)  # deals leaving the stage needed in each window
    alpha: float = Field(0.001, gt=0, lt=0.5)  # one-sided two-proportion z-test level


def _forward(before: Any, after: Any) -> bool:
    """A move from stage row ``before`` to ``after`` advanced the deal: a later stage, not a lost one."""
    return after.sort_order > before.sort_order and not (after.is_closed and not after.is_won)


class StageConversionDrop:
    name: ClassVar[str] = "stage_conversion_drop"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = SeverityTiers(warn=0.75, critical=0.5)

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        chosen = tiers(rule, self.default_tiers)
        sc, o = stage_changes, opportunities
        split = now - timedelta(days=params.window_days)
        start = split - timedelta(days=params.baseline_days)
        # Counted per (pipeline, from, to) from the sync's per-day rollups (rules/stage_history.py); the stages
        # table is small, so "advanced" is decided here per pair.
        windows = {
            0: stage_history.moves(warehouse, start, split, now, rule.scope),
            1: stage_history.moves(warehouse, split, now, now, rule.scope),
        }
        pairs = [(*move, is_recent, n) for is_recent, counted in windows.items() for move, n in counted.items()]
        known = {(r.source, r.pipeline, r.api_name): r for r in warehouse.conn.execute(select(stages))}
        counts: dict[tuple, list[int]] = {}
        for source, pipeline, from_stage, to_stage, is_recent, count in pairs:
            before, after = known.get((source, pipeline, from_stage)), known.get((source, pipeline, to_stage))
            if before is None or after is None or before.is_closed:
                continue
            moved = _forward(before, after)
            cell = counts.setdefault((source, pipeline, from_stage, before.id, before.label, int(is_recent)), [0, 0])
            cell[0] += int(count) if moved else 0
            cell[1] += int(count)
        rows = [(*key, moved, exits) for key, (moved, exits) in counts.items()]

        def samples(source: str, pipeline: str, api_name: str) -> tuple[SampleRecord, ...]:
            """The biggest deals that left the stage in the current window without moving forward."""
            if params.max_samples <= 0:
                return ()
            before = known[(source, pipeline, api_name)]
            same = [(a, after) for (s, p, a), after in known.items() if (s, p) == (source, pipeline)]
            back = [a for a, after in same if not _forward(before, after)]
            # The biggest few among the latest exits to each stage behind (the (source, from, to, time) index walked
            # backwards, a bounded number of steps), from indexes alone; names, owners and links for those only.
            latest = [
                select(recent.c.opportunity_id, recent.c.to_stage, recent.c.changed_at).select_from(recent)
                for recent in (
                    select(sc.c.opportunity_id, sc.c.to_stage, sc.c.changed_at)
                    .where(sc.c.source == source, sc.c.from_stage == api_name, sc.c.to_stage == to_stage,
                           sc.c.changed_at > split, sc.c.changed_at <= now)
                    .order_by(sc.c.changed_at.desc())
                    .limit(SAMPLED_EXITS)
                    .subquery()
                    for to_stage in back
                )
            ]  # fmt: skip
            if not latest:
                return ()
            exits = union_all(*latest).subquery("exits")
            worst = (
                select(o.c.id.label("deal_id"), exits.c.to_stage, exits.c.changed_at, o.c.amount_reporting)
                .join_from(exits, o, o.c.id == exits.c.opportunity_id)
                .join(reps, reps.c.id == o.c.owner_id)
                .where(o.c.pipeline == pipeline, alive_at(o, now), deal_condition(rule.scope, o, reps))
                .order_by(o.c.amount_reporting.desc(), o.c.id)
                .limit(params.max_samples)
                .subquery("worst")
            )
            lost = warehouse.conn.execute(
                select(o.c.id, o.c.name, o.c.amount_reporting, reps.c.name.label("owner"),
                       stage_label(o.c.source, o.c.pipeline, worst.c.to_stage).label("stage"), o.c.crm_url,
                       days_between(worst.c.changed_at, now).label("days"))
                .join_from(worst, o, o.c.id == worst.c.deal_id)
                .join(reps, reps.c.id == o.c.owner_id)
                .order_by(o.c.amount_reporting.desc(), o.c.id)
            ).mappings()  # fmt: skip
            return tuple(deal_sample(r) for r in lost)

        tally: dict[tuple[str, str, str, str, str], dict[int, tuple[int, int]]] = {}
        for source, pipeline, api_name, stage_id, label, is_recent, moved, exits in rows:
            tally.setdefault((source, pipeline, api_name, stage_id, label), {})[int(is_recent)] = (
                int(moved),
                int(exits),
            )
        findings = []
        for (source, pipeline, api_name, stage_id, label), windows in sorted(tally.items()):
            a1, n1 = windows.get(1, (0, 0))
            a0, n0 = windows.get(0, (0, 0))
            if min(n1, n0) < params.min_exits or a0 == 0:
                continue
            p1, p0 = a1 / n1, a0 / n0
            pooled = (a1 + a0) / (n1 + n0)
            spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
            z = (p1 - p0) / spread if spread > 0 else 0.0
            p_value = float(norm.cdf(z))
            ratio = p1 / p0
            severity = significant(ratio, chosen, "below", p_value, params.alpha)
            if severity is None:
                continue
            findings.append(
                share_finding(
                    rule,
                    now,
                    subject=Subject("stage", stage_id, label),
                    severity=severity,
                    share=p1,
                    baseline=p0,
                    sample_size=n1,
                    samples=samples(source, pipeline, api_name),
                    explanation=(
                        f"{p1:.0%} of the {n1:,} deals that left {label} ({source}, pipeline {pipeline}) in the last "
                        f"{params.window_days} days moved forward, against {p0:.0%} of {n0:,} in the "
                        f"{params.baseline_days} days before ({ratio:.2f}x, z = {z:.1f})."
                    ),
                    details={"advanced": a1, "exits": n1, "baseline_advanced": a0, "baseline_exits": n0,
                             "ratio": round(ratio, 3), "z": round(z, 2), "p_value": p_value,
                             "source": source, "pipeline": pipeline, "stage": api_name},
                )
            )  # fmt: skip
        return Evaluation(rule.id, rule.kind, now, tuple(findings))
