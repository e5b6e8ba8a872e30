"""The synthetic company the fake CRMs serve, with known problems planted in it.

``generate(store, out_dir, scale=SCALES["small"], seed=1, anchor=date(2025, 5, 14))`` streams
a company into the sandbox store (teams, reps, pipelines, leads, deals with their full
history, activities, Salesforce quotas), writes ``out_dir/quotas.csv`` (the admins' quota
file for every rep of both CRMs: the last four calendar quarters and the current one) and
``out_dir/ground_truth.json``, and returns the same ground truth. Same scale, seed, anchor
and problems give byte-identical output. ``anchor`` is the company's today: nothing is
created, changed or done after its end of day (UTC); history goes back two years.

Run ``python -m sandbox.company --scale medium --seed 1 --out DIR`` to generate into
``DIR/company.sqlite`` and print the time taken and the peak memory. Measured on a 2-core
machine: medium (100k deals, 1.2M rows) about 35 s and 55 MB peak RSS; large (1M deals,
10.5M rows, 3.3 GB of SQLite) about 6 minutes and 52 MB: memory does not grow with scale.

How the company looks (details in the modules named):

- teams, one CRM each (~60 % Salesforce), a 'Sales Manager' and 5-8 reps each; reps sell
  and are measured in one currency each (USD, EUR, GBP, JPY) (:mod:`sandbox.company_org`);
- leads routed round-robin inside a team, some converted into deals (:mod:`sandbox.company_leads`);
- deals that move through the funnel stage by stage, with every stage change, close-date
  change and amount revision in ``deal_history`` (only changes, as Salesforce records them:
  a deal's first stage is its stage at creation), activities during their life
  (:mod:`sandbox.company_deals`). Stage ``probability`` is stored 0..1 for both CRMs;
  amounts are whole units of the deal's currency, as text; ``close_date`` is 'YYYY-MM-DD';
- planted problems (:mod:`sandbox.planted`): everything not planted is clearly healthy, so
  a rule firing on this data should fire exactly where the ground truth says;
- dirty records (:mod:`sandbox.company_dirty`).

The company's records start two years before the anchor with an empty pipeline, so its
first months close fewer deals than the rest; the last five quarters are steady.

Ground truth (``ground_truth.json``, UTF-8, keys sorted; all ids are the CRM's own ids)::

    {
      "generator": {"seed": 1, "scale": {"name": "small", "reps": 10, "deals": 1000, "leads": 2500,
                    "activities_per_deal": 4.5, "activities_per_lead": 0.5},
                    "anchor": "2025-05-14", "anchor_end": "2025-05-14T23:59:59.999Z",
                    "history_start": "2023-05-15", "problems": ["ahead_of_quota", ...],
                    "dirty_rate": 0.01, "company": "Acme Analytics",
                    "fx_rates": {"EUR": 1.08, ...},            # USD per unit (the sandbox exports no settings rate)
                    "crm_rates": {"corporate": "USD",         # the rates the fake CRMs serve (sandbox.company_rates)
                                  "salesforce": {"EUR": "0.925926", ...},      # CurrencyType.ConversionRate
                                  "salesforce_dated": [{"iso_code", "conversion_rate", "start", "next_start"}],
                                  "hubspot": {"EUR": "1.08", ...}}},          # exchange-rates conversionRate
      "period": {"quarter_start": "2025-04-01", "quarter_end": "2025-06-30",
                 "elapsed_days": 44, "quarter_days": 91},       # current calendar quarter; pace = quota * 44 / 91
      "teams": [{"crm", "id", "name", "manager_id", "rep_ids": [...]}],
      "counts": {"salesforce": {"deals": {"rows": 600, "deleted": 0, "dirty_valid": 3, "dirty_invalid": 5},
                                "users": {...}, ...every store table}, "hubspot": {...}},
      "problems": {                                             # only the problems that were switched on
        "behind_quota" / "ahead_of_quota": [{"crm", "rep_id", "rep_email", "team_id", "currency",
            "period_start", "period_end", "quota", "elapsed_days", "quarter_days", "pace",
            "won_amount", "won_deals", "pct_of_pace"}],          # won: is_won deals closed this quarter
        "stalled_stage": [{"crm", "pipeline_id", "stage_id", "median_days_in_stage", "open_deals",
            "other_stages": {stage: {"median_days", "open_deals"}},   # every other open stage of the CRM
            "ratio_to_highest_other"}],           # one per CRM; vs other stages with >= 10 open deals
        "conversion_drop": [{"crm", "pipeline_id", "from_stage", "to_stage", "window_days": 90,
            "prior_days": 365, "recent": {"from", "to", "exits", "advanced", "rate"},
            "prior": {...}}],       # one per CRM, out of the first stage; exits = stage changes out of it
        "uneven_leads": [{"crm", "team_id", "team_name", "window_days": 30, "since",
            "leads_per_rep": {rep_id: n}, "favoured_rep_ids", "favoured_share"}],   # by assigned_at
        "no_activity": [{"crm", "deal_id", "owner_id", "stage_id", "last_activity_at",
            "days_without_activity"}],                           # every open deal idle >= 21 days
        "pushed_close_dates": [{"crm", "deal_id", "owner_id", "pushes", "close_dates",
            "pushed_at"}]                                         # every deal whose close date moved later >= 3 times
      },
      "dirty": [{"crm", "table": "deals" | "leads", "id", "kind", "field", "valid",
                 "value" (or "length" for long names)}]
    }

Days are measured to the anchor's end of day. Quotas are the rep's CRM quota and the file
quota alike (same numbers). ``valid: false`` dirty records are the ones a sync must
quarantine; ``valid: true`` ones must sync and render.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.company_catalog import (
    COMPANY_NAME,
    CRMS,
    CURRENCIES,
    CURRENCY,
    REP_TITLES,
    SALESFORCE,
    Rng,
    Window,
    business_moment,
    day_number,
    day_text,
    iso_ms,
    next_quarter,
    previous_quarter,
    quarter_start,
    record_id,
    to_date,
    workday,
)
from sandbox.company_deals import RepJob, standard_quota_usd, write_rep_deals
from sandbox.company_dirty import write_dirty
from sandbox.company_leads import LeadStream, write_team_leads
from sandbox.company_mutate import MutationSummary, mutate
from sandbox.company_org import SALESFORCE_TEAM_SHARE, Org, Person, build_org
from sandbox.company_rates import write_rates
from sandbox.company_sink import Sink
from sandbox.planted import PROBLEMS, Plan, make_plan, measure
from sandbox.store import DELETABLE, TABLES, Store

__all__ = ["PROBLEMS", "SCALES", "GroundTruth", "MutationSummary", "Scale", "generate", "mutate"]

# Part of the name of a generated company's folder: a company made by an older generator
# (say, without the CRMs' exchange rates) is not reused.
GENERATOR_VERSION = 2
CONVERTED_DEAL_SHARE = 0.35  # of a rep's deals come from converted leads
QUOTA_FILE_QUARTERS = 5  # the last four quarters and the current one
QUOTA_HEADER = ("rep_email", "period_start", "period_end", "amount", "currency")


@dataclass(frozen=True)
class Scale:
    name: str
    reps: int
    deals: int
    leads: int
    activities_per_deal: float = 4.5
    activities_per_lead: float = 0.5
    salesforce_share: float = SALESFORCE_TEAM_SHARE  # of the teams; each CRM keeps at least one

    def __post_init__(self) -> None:
        if self.reps < 2:
            raise ValueError("a company needs at least 2 reps (one team per CRM)")
        if not 0 < self.salesforce_share < 1:
            raise ValueError("salesforce_share is a share of the teams, between 0 and 1")
        if min(self.deals, self.leads) < 0 or min(self.activities_per_deal, self.activities_per_lead) < 0:
            raise ValueError("counts and rates cannot be negative")


SCALES = {
    "small": Scale("small", reps=10, deals=1_000, leads=2_500),
    "medium": Scale("medium", reps=50, deals=100_000, leads=200_000),
    "large": Scale("large", reps=500, deals=1_000_000, leads=1_000_000),
    # Medium and large with one team on HubSpot (of 8 and of 72), for the rules benchmark: the fake HubSpot
    # serves deal history at a few hundred records/s, so syncing 40 % of a million deals from it takes hours;
    # the warehouse rows are the same whichever CRM they came from.
    "medium-sf": Scale("medium-sf", reps=50, deals=100_000, leads=200_000, salesforce_share=0.99),
    "large-sf": Scale("large-sf", reps=500, deals=1_000_000, leads=1_000_000, salesforce_share=0.99),
}


@dataclass(frozen=True)
class GroundTruth:
    """What was generated and planted; the JSON form is documented in the module docstring."""

    generator: dict[str, Any]
    period: dict[str, Any]
    teams: list[dict[str, Any]]
    counts: dict[str, dict[str, dict[str, int]]]
    problems: dict[str, list[dict[str, Any]]]
    dirty: list[dict[str, Any]]

    def write(self, path: Path) -> None:
        """Stream the JSON to ``path`` (no copy of the whole truth in memory: it grows with the scale)."""
        with path.open("w", encoding="utf-8") as handle:
            json.dump(vars(self), handle, indent=2, sort_keys=True, ensure_ascii=False)
            handle.write("\n")

    @classmethod
    def load(cls, path: Path) -> GroundTruth:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def invalid_ids(self, crm: str, table: str) -> set[str]:
        """Ids of the records a sync must quarantine."""
        return {d["id"] for d in self.dirty if d["crm"] == crm and d["table"] == table and not d["valid"]}


def generate(
    store: Store,
    out_dir: Path,
    *,
    scale: Scale,
    seed: int,
    anchor: date,
    problems: set[str] | None = None,
    dirty_rate: float = 0.01,
    dated_rates: bool | None = None,
) -> GroundTruth:
    """``dated_rates``: Salesforce with advanced currency management (dated rates); default: even seeds."""
    chosen = frozenset(PROBLEMS if problems is None else problems)
    unknown = sorted(chosen - set(PROBLEMS))
    if unknown:
        raise ValueError(f"unknown problem(s) {', '.join(unknown)}; known: {', '.join(PROBLEMS)}")
    if any(store.count("users", crm) for crm in CRMS):
        raise ValueError(f"{store.path} already holds a company; generate into an empty store")
    window = Window.of(anchor)
    sink = Sink(store)
    org = build_org(scale.reps, seed, window, sink, salesforce_share=scale.salesforce_share)
    plan = make_plan(org, scale.deals, seed, chosen)
    quotas = _quotas(org, scale, plan, window, seed)
    stale, pushed = _write_leads_and_deals(org, plan, scale, quotas, window, seed, sink)
    quota_rows = _quota_rows(org, quotas, window)
    _write_crm_quotas(quota_rows, window, seed, sink)
    sink.flush()
    store.create_indexes()

    featured = {crm: min(d for c, d in stale if c == crm) for crm in CRMS if any(c == crm for c, _ in stale)}
    dirty = write_dirty(store, seed, dirty_rate, window, featured)
    rates = write_rates(store, window, dated=seed % 2 == 0 if dated_rates is None else dated_rates)
    truth = GroundTruth(
        generator={
            "seed": seed,
            "scale": asdict(scale),
            "anchor": anchor.isoformat(),
            "anchor_end": iso_ms(window.end_ms),
            "history_start": day_text(window.start_day),
            "problems": sorted(chosen),
            "dirty_rate": dirty_rate,
            "company": COMPANY_NAME,
            "fx_rates": {c.code: c.usd_per_unit for c in CURRENCIES[1:]},
            "crm_rates": rates,
        },
        period={
            "quarter_start": window.quarter_start.isoformat(),
            "quarter_end": window.quarter_end.isoformat(),
            "elapsed_days": window.elapsed_days,
            "quarter_days": window.quarter_days,
        },
        teams=[
            {"crm": t.crm, "id": t.id, "name": t.name, "manager_id": t.manager.id, "rep_ids": [r.id for r in t.reps]}
            for t in org.teams
        ],
        counts=_counts(store, dirty),
        problems=measure(store, plan, org, window, quotas, stale, pushed),
        dirty=dirty,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_quota_file(out_dir / "quotas.csv", quota_rows)
    truth.write(out_dir / "ground_truth.json")
    for key, value in (("seed", str(seed)), ("scale", scale.name), ("anchor", anchor.isoformat())):
        store.set_meta(key, value)
    store.set_meta("generator", json.dumps(truth.generator, sort_keys=True))
    return truth


def _write_leads_and_deals(
    org: Org, plan: Plan, scale: Scale, quotas: dict[str, int], window: Window, seed: int, sink: Sink
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Team by team: its lead stream, then each rep's deals. Returns the planted idle and pushed deals."""
    reps = org.reps()
    weights = [_active_days(r, window) * Rng(f"{seed}:pace:{r.id}").uniform(0.8, 1.2) for r in reps]
    deal_counts = dict(zip((r.id for r in reps), _allocate(scale.deals, weights), strict=True))
    lead_counts = _allocate(scale.leads, [sum(_active_days(r, window) for r in t.reps) for t in org.teams])
    conversion_rate = min(0.6, CONVERTED_DEAL_SHARE * scale.deals / scale.leads) if scale.leads else 0.0
    stale: list[tuple[str, str]] = []
    pushed: list[tuple[str, str]] = []
    for team, leads in zip(org.teams, lead_counts, strict=True):
        first_seq = {r.id: sink.reserve(team.crm, "deals", deal_counts[r.id]) for r in team.reps}
        caps = {r.id: deal_counts[r.id] for r in team.reps}
        stream = LeadStream(leads, conversion_rate, scale.activities_per_lead, caps, first_seq)
        conversions = write_team_leads(team, stream, plan, window, seed, sink)
        for rep in team.reps:
            job = RepJob(
                rep,
                deal_counts[rep.id],
                first_seq[rep.id],
                conversions[rep.id],
                scale.activities_per_deal,
                quotas[rep.id],
            )
            result = write_rep_deals(job, plan, window, seed, sink)
            stale += [(rep.crm, d) for d in result.stale]
            pushed += [(rep.crm, d) for d in result.pushed]
    return stale, pushed


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` exactly (largest remainders, ties to the first)."""
    whole = sum(weights)
    raw = [total * w / whole for w in weights]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _active_days(rep: Person, window: Window) -> int:
    return window.anchor_day - rep.first_day(window) + 1


# -- quotas -----------------------------------------------------------------------------------------
def round_quota(amount: float) -> int:
    """Three significant digits, as quotas are set (123,456 -> 123,000)."""
    if amount < 1:
        return 0
    unit = 10 ** max(0, len(str(int(amount))) - 3)
    return max(unit, round(amount / unit) * unit)


def _quotas(org: Org, scale: Scale, plan: Plan, window: Window, seed: int) -> dict[str, int]:
    """Each rep's quarterly quota: the CRM's standard (what a rep with the average flow of deals
    won per quarter last year), scaled by title, in the rep's currency. Reps land around it by
    their own pace (0.8-1.2)."""
    tenure = sum(_active_days(r, window) for r in org.reps())
    full_rep_deals = round(scale.deals * (window.anchor_day - window.start_day + 1) / tenure)
    standard = {crm: standard_quota_usd(crm, full_rep_deals, plan, window, seed) for crm in CRMS}
    return {
        r.id: max(1, round_quota(standard[r.crm] * REP_TITLES[r.title] / CURRENCY[r.currency].usd_per_unit))
        for r in org.reps()
    }


@dataclass(frozen=True)
class _QuotaRow:
    rep: Person
    start: date
    end: date
    amount: int


def _quota_rows(org: Org, quotas: dict[str, int], window: Window) -> list[_QuotaRow]:
    """Every rep's quarterly quota for each calendar quarter they worked in, history and current."""
    quarters, start = [], quarter_start(to_date(window.start_day))
    while start <= window.quarter_start:
        quarters.append(start)
        start = next_quarter(start)
    rows = []
    for rep in org.reps():
        hired = to_date(rep.hired_day)
        for q in quarters:
            end = next_quarter(q) - timedelta(days=1)
            if end < hired:
                continue
            share = 1.0 if hired <= q else ((end - hired).days + 1) / ((end - q).days + 1)
            rows.append(_QuotaRow(rep, q, end, round_quota(quotas[rep.id] * share)))
    return rows


def _write_crm_quotas(rows: list[_QuotaRow], window: Window, seed: int, sink: Sink) -> None:
    """Salesforce ForecastingQuota rows (HubSpot keeps no quotas: those reps have the file only)."""
    rng = Rng(f"{seed}:quotas")
    for row in rows:
        if row.rep.crm != SALESFORCE:
            continue
        seq = sink.next_seq(SALESFORCE, "quotas")
        set_on = min(window.end_ms, business_moment(workday(day_number(row.start) - 10), rng))
        stamp = iso_ms(set_on)
        sink.add(
            "quotas",
            {
                "crm": SALESFORCE,
                "id": record_id(SALESFORCE, "quotas", seq),
                "seq": seq,
                "owner_id": row.rep.id,
                "period_start": row.start.isoformat(),
                "period_end": row.end.isoformat(),
                "amount": str(row.amount),
                "currency": row.rep.currency,
                "created_at": stamp,
                "modified_at": stamp,
            },
        )


def _write_quota_file(path: Path, rows: list[_QuotaRow]) -> None:
    first = rows and max(r.start for r in rows)
    for _ in range(QUOTA_FILE_QUARTERS - 1):
        first = previous_quarter(first) if first else first
    chosen = sorted((r for r in rows if first and r.start >= first), key=lambda r: (r.rep.email, r.start))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(QUOTA_HEADER)
        for r in chosen:
            writer.writerow((r.rep.email, r.start.isoformat(), r.end.isoformat(), r.amount, r.rep.currency))


def _counts(store: Store, dirty: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for crm in CRMS:
        counts[crm] = {}
        for table in TABLES:
            entry = {"rows": store.count(table, crm)}
            if table in DELETABLE:
                entry["deleted"] = store.count(table, crm, "deleted_at IS NOT NULL")
            if table in ("deals", "leads"):
                mine = [d for d in dirty if d["crm"] == crm and d["table"] == table]
                entry["dirty_valid"] = sum(d["valid"] for d in mine)
                entry["dirty_invalid"] = len(mine) - entry["dirty_valid"]
            counts[crm][table] = entry
    return counts


# -- command line -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.company", description="Generate the sandbox company.")
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for company.sqlite, quotas.csv, ground_truth.json"
    )
    parser.add_argument(
        "--anchor", type=date.fromisoformat, help="the company's today, YYYY-MM-DD (default: today, UTC)"
    )
    args = parser.parse_args(argv)
    db = args.out / "company.sqlite"
    if db.exists():
        print(f"{db} exists; remove it or choose another --out", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    anchor = args.anchor or datetime.now(UTC).date()
    began = time.perf_counter()
    store = Store(db)
    truth = generate(store, args.out, scale=SCALES[args.scale], seed=args.seed, anchor=anchor)
    store.close()
    elapsed = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = sum(t["rows"] for c in truth.counts.values() for t in c.values())
    print(
        f"generated {args.scale} (seed {args.seed}, anchor {anchor}): {rows:,} rows in {elapsed:.1f} s, "
        f"peak RSS {peak_mb:.0f} MB -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
