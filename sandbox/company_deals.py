"""One rep's deals: their lives through the funnel, their history and their activities.

A rep's deals are simulated together (2,000 at the medium and large scales), then written
and forgotten, so memory follows the deals per rep, not the size of the company. Each deal starts in the
first stage of its pipeline; in each open stage it dwells a log-normal time, then moves on
with the stage's conversion rate or is lost. Anything that would happen after the anchor
does not happen yet: the deal is open in the stage it was in.

Who moves on is not a coin flip per deal: a rep's stage decisions are taken in time order
and each stage's outcomes are spread evenly over them (error diffusion), so a stage's
conversion rate holds steady over any stretch of time, as in a healthy funnel, even at
the small scale where coin flips would wander by chance and look like a problem. Only the
planted ``conversion_drop`` moves a rate.

The current quarter is then shaped so each rep's attainment is what the plan says (see
:mod:`sandbox.planted`): the amounts of the rep's deals won this quarter are scaled to the
target (a behind rep closes small deals only), and a rep with no win yet, unless meant to
be behind, closes their most advanced open deal. Outcomes are never flipped: that would
bend the funnel's conversion rates at small scales.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import NormalDist

from sandbox.company_catalog import (
    BUSINESS_SPAN_MS,
    BUSINESS_START_MS,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    PRODUCTS,
    RECENT_DAYS,
    Pipeline,
    Rng,
    Window,
    business_moment,
    company_name,
    day_number,
    day_text,
    growth_moment,
    in_business_hours,
    iso_ms,
    list_price,
    next_quarter,
    pipelines_of,
    poisson_table,
    quarter_start,
    record_id,
    to_date,
    workday,
)
from sandbox.company_leads import Conversion
from sandbox.company_org import Person
from sandbox.company_sink import Sink
from sandbox.planted import JUNK_DWELL, ROLE_RATIOS, STALL_FACTOR, Plan, Tuning

DWELL_SIGMA = 0.35
GOLDEN = 0.6180339887498949
_NORMAL = NormalDist()
MEDIAN_DEAL_USD = 25_000
AMOUNT_SIGMA = 0.9
QUARTER_END_RUSH = 0.5  # share of wins due in a quarter's last month that wait for its last 12 days
AMOUNT_REVISED = 0.12  # share of deals whose amount changed once
FRESH_ACTIVITY_DAYS = 14  # every healthy open deal has an activity this recent
STALE_MIN_DAYS, STALE_MAX_DAYS = 24, 60
PIPELINE_STRETCH = 2.0  # the most an open deal's amount is scaled to size the quarter's pipeline


class Deal:
    """A deal while its rep is being generated; ``events`` are (stage index, ms), the first at creation."""

    __slots__ = (
        "amount",
        "amount_was",
        "created",
        "due",
        "events",
        "forecast",
        "id",
        "junk",
        "lead_id",
        "name",
        "pipeline",
        "seq",
    )

    def __init__(self, seq: int, deal_id: str, pipeline: Pipeline, created: int, name: str, lead_id: str | None):
        self.seq = seq
        self.id = deal_id
        self.pipeline = pipeline
        self.created = created
        self.name = name
        self.lead_id = lead_id
        self.events: list[tuple[int, int]] = [(0, created)]
        self.amount = 0
        self.amount_was = 0.0  # ratio of the first amount to the final one; 0 = never revised
        self.junk = False  # part of a planted surge of poor prospects (see sandbox.planted)
        self.due = 0  # an open deal's next stage decision, after the anchor (0 = none simulated)
        self.forecast = 0  # an open deal's close date (day number): when it would be won, see forecast_day

    @property
    def closed(self) -> bool:
        return self.events[-1][0] >= self.pipeline.open_count

    @property
    def won(self) -> bool:
        return self.events[-1][0] == self.pipeline.won

    @property
    def last_moment(self) -> int:
        return self.events[-1][1]


@dataclass
class RepResult:
    """The planted deals of a rep, for the ground truth."""

    stale: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RepJob:
    rep: Person
    count: int
    first_seq: int
    conversions: list[Conversion]
    activities_per_deal: float
    quota: int  # this quarter's, in the rep's currency


def standard_quota_usd(crm: str, deals: int, plan: Plan, window: Window, seed: int) -> float:
    """What a rep of ``crm`` with two years' tenure and ``deals`` deals won per quarter over the
    year before this quarter, in USD: the company sets its quotas from this, so that past
    attainment hovers around 100 % whatever problems are planted in the CRM's funnel."""
    rep = Person(crm, "reference", 0, "", "", "", "", "", None, window.start_day, "USD")
    made = _make_deals(RepJob(rep, deals, 1, [], 0.0, 0), plan, window, Rng(f"{seed}:reference:{crm}"))
    since = window.quarter_start_ms - 4 * 91 * DAY_MS
    return sum(d.amount for d in made if d.won and since <= d.last_moment < window.quarter_start_ms) / 4


def write_rep_deals(job: RepJob, plan: Plan, window: Window, seed: int, sink: Sink) -> RepResult:
    rng = Rng(f"{seed}:deals:{job.rep.id}")
    rep = job.rep
    deals = _make_deals(job, plan, window, rng)
    for deal in deals:
        if not deal.closed:
            deal.forecast = forecast_day(deal, window)
    _shape_quarter(deals, job.quota, plan.role(rep.id), window, rng)
    result = RepResult()
    open_deals = [d for d in deals if not d.closed]
    stale_ok = [
        d
        for d in open_deals
        if d.created <= window.end_ms - 40 * DAY_MS and d.last_moment <= window.end_ms - 30 * DAY_MS
    ]
    stale = rng.sample(stale_ok, min(len(stale_ok), plan.stale_budget.get(rep.id, 0)))
    pushed_ok = [d for d in open_deals if d.created <= window.end_ms - 75 * DAY_MS and d not in set(stale)]
    pushed = rng.sample(pushed_ok, min(len(pushed_ok), plan.pushed_budget.get(rep.id, 0)))
    result.stale = sorted(d.id for d in stale)
    result.pushed = sorted(d.id for d in pushed)
    table = poisson_table(job.activities_per_deal)
    stale_ids, pushed_ids = set(result.stale), set(result.pushed)
    for deal in deals:
        _write_deal(deal, rep, deal.id in stale_ids, deal.id in pushed_ids, table, window, rng, sink)
    return result


def _make_deals(job: RepJob, plan: Plan, window: Window, rng: Rng) -> list[Deal]:
    rep = job.rep
    pipelines = pipelines_of(rep.crm)
    tunings = {p.id: plan.tuning(p) for p in pipelines}
    junk_from = max(len(job.conversions), job.count - round(tunings[pipelines[0].id].junk_share * job.count))
    deals = []
    for k in range(job.count):
        seq = job.first_seq + k
        if k < len(job.conversions):
            conv = job.conversions[k]
            created, company, lead_id = conv.at_ms + rng.randint(1, 30) * MINUTE_MS, conv.company, conv.lead_id
        else:
            created, company, lead_id = growth_moment(rng, window, rep.first_day(window)), company_name(rng), None
        pipeline = pipelines[0] if len(pipelines) == 1 or rng.random() < pipelines[0].share else pipelines[1]
        if k >= junk_from:
            pipeline, created = pipelines[0], _surge_moment(window, rng)
        name = f"{company} - {rng.choice(PRODUCTS)}"
        deal = Deal(seq, record_id(rep.crm, "deals", seq), pipeline, created, name, lead_id)
        deal.junk = k >= junk_from
        deals.append(deal)
    _simulate(deals, tunings, window, rng)
    for deal in deals:
        usd = min(2_000_000, max(1_000, MEDIAN_DEAL_USD * rng.lognormvariate(0, AMOUNT_SIGMA)))
        deal.amount = list_price(usd * (0.6 if deal.pipeline.id != "default" else 1.0), rep.currency)
        if len(deal.events) > 1 and rng.random() < AMOUNT_REVISED:
            deal.amount_was = rng.uniform(0.6, 1.4)
    return deals


# -- the funnel ---------------------------------------------------------------------------------
def _after(t: int, days: float, rng: Rng) -> int:
    """A business moment about ``days`` after ``t`` (and always after it)."""
    moment = business_moment(workday((t + int(days * DAY_MS)) // DAY_MS), rng)
    return moment if moment > t else t + rng.randint(5, 90) * MINUTE_MS


def _surge_moment(window: Window, rng: Rng) -> int:
    """A moment in the last RECENT_DAYS, when the planted surge of poor prospects came in."""
    day = window.anchor_day - rng.randint(2, RECENT_DAYS)
    shifted = workday(day)
    return business_moment(shifted if shifted <= window.anchor_day else day, rng)


def _simulate(deals: list[Deal], tunings: dict[str, Tuning], window: Window, rng: Rng) -> None:
    """Walk the rep's deals down their funnels, every stage decision in time order.

    ``owed`` carries, per stage, the rep's running share of deals due a move forward: the
    outcomes are spread evenly over time (error diffusion, see the module docstring).
    """
    start = window.start_day * DAY_MS
    owed: dict[tuple[str, int], float] = {}
    spread: dict[tuple[str, int], float] = {}
    due: list[tuple[int, int, int]] = []  # (decision moment, seq, stage index)
    by_seq = {d.seq: d for d in deals}

    def dwell(deal: Deal, i: int, since: int) -> None:
        # Log-normal dwell times, their quantiles spread evenly (golden-ratio sequence) per stage.
        key = (deal.pipeline.id, i)
        quantile = spread[key] = (spread.get(key, rng.random()) + GOLDEN) % 1.0
        noise = math.exp(DWELL_SIGMA * _NORMAL.inv_cdf(min(max(quantile, 1e-9), 1 - 1e-9)))
        days = deal.pipeline.stages[i].dwell_days * noise
        if i == tunings[deal.pipeline.id].stalled:  # the stage clogs up over the years
            days *= 1 + (STALL_FACTOR - 1) * (since - start) / (window.end_ms - start)
        elif deal.junk:
            days *= JUNK_DWELL
        moment = _after(since, days, rng)
        if moment <= window.end_ms:
            heapq.heappush(due, (moment, deal.seq, i))
        else:
            deal.due = moment

    for deal in sorted(deals, key=lambda d: (d.created, d.seq)):
        dwell(deal, 0, deal.created)
    while due:
        t, seq, i = heapq.heappop(due)
        deal = by_seq[seq]
        pipeline = deal.pipeline
        if deal.junk:
            deal.events.append((pipeline.lost, t))
            continue
        share = owed.get((pipeline.id, i), rng.random()) + pipeline.stages[i].advance
        owed[(pipeline.id, i)] = share % 1.0
        if share < 1.0:
            deal.events.append((pipeline.lost, t))
        elif i + 1 == pipeline.open_count:
            t = _quarter_end_rush(t, rng)
            if t <= window.end_ms:
                deal.events.append((pipeline.won, t))
            else:
                deal.due = t
        else:
            deal.events.append((i + 1, t))
            dwell(deal, i + 1, t)


def _quarter_end_rush(t: int, rng: Rng) -> int:
    """Sales closes at quarter end: some wins due in the quarter's last month wait for its last 12 days."""
    if rng.random() >= QUARTER_END_RUSH:
        return t
    day = t // DAY_MS
    last_day = day_number(next_quarter(quarter_start(to_date(day)))) - 1
    if not last_day - 30 <= day < last_day - 12:
        return t
    target = rng.randint(last_day - 12, last_day)
    weekday = (target + 3) % 7
    return max(t, business_moment(target - (weekday - 4) if weekday >= 5 else target, rng))


# -- this quarter ----------------------------------------------------------------------------------
def _shape_quarter(deals: list[Deal], quota: int, role: str, window: Window, rng: Rng) -> None:
    low, high = ROLE_RATIOS[role]
    ratio = rng.uniform(low, high)
    target = ratio * quota * window.elapsed_days / window.quarter_days
    wins = [d for d in deals if d.won and d.last_moment >= window.quarter_start_ms]
    if not wins and role != "behind":
        forced = _force_win(deals, window, rng)
        wins = [forced] if forced else []
    total = sum(d.amount for d in wins)
    for deal in wins:
        deal.amount = max(1, round(deal.amount * target / total))
    _shape_pipeline(deals, ratio * quota * (1 - window.elapsed_days / window.quarter_days), window, rng)


def win_chance(deal: Deal) -> float:
    """The funnel's chance that an open deal is won: the advance rates of its stage and those after."""
    return math.prod(s.advance for s in deal.pipeline.stages[deal.events[-1][0] : deal.pipeline.open_count])


def _shape_pipeline(deals: list[Deal], remaining: float, window: Window, rng: Rng) -> None:
    """Size the open pipeline closing this quarter so that, weighted by the funnel's win chances,
    it is what the rep is due to win in the rest of the quarter at the pace planted so far.

    A healthy rep on pace is then projected near quota, as in a company whose quotas were set
    from its pipeline. A thin pipeline is first filled with the rep's most advanced later deals
    (a rep pulls deals in) until it covers at least 1 / ``PIPELINE_STRETCH`` of what is due, so
    amounts are stretched at most that much while the rep has deals to pull in.
    """
    last_day = day_number(window.quarter_end)
    if window.anchor_day >= last_day or remaining <= 0:
        return
    open_deals = sorted(
        (d for d in deals if not d.closed and not d.junk), key=lambda d: (-d.events[-1][0], d.forecast, d.seq)
    )
    inside = [d for d in open_deals if d.forecast <= last_day]
    later = [d for d in open_deals if d.forecast > last_day]
    weighted = sum(d.amount * win_chance(d) for d in inside)
    while later and weighted * PIPELINE_STRETCH < remaining:
        deal = later.pop(0)
        deal.forecast = rng.randint(window.anchor_day + 1, last_day)
        inside.append(deal)
        weighted += deal.amount * win_chance(deal)
    for deal in inside:
        deal.amount = max(1, round(deal.amount * remaining / weighted))


def _force_win(deals: list[Deal], window: Window, rng: Rng) -> Deal | None:
    """Close the rep's most advanced open deal (or reopen a lost one) as won this quarter."""
    latest = window.anchor_day * DAY_MS + BUSINESS_START_MS + BUSINESS_SPAN_MS
    earliest = window.quarter_start_ms + BUSINESS_START_MS

    def room(last: int) -> bool:
        return max(last, earliest) + HOUR_MS < latest

    open_deals = [d for d in deals if not d.closed and not d.junk and room(d.last_moment)]
    if open_deals:
        deal = min(open_deals, key=lambda d: (-d.events[-1][0], d.last_moment, d.seq))
    else:
        lost = [
            d for d in deals if d.closed and not d.won and not d.junk and len(d.events) > 1 and room(d.events[-2][1])
        ]
        if not lost:
            return None
        deal = max(lost, key=lambda d: (d.last_moment, d.seq))
        deal.events.pop()
    stage, last = deal.events[-1]
    close = rng.randint(max(last, earliest) + HOUR_MS, latest)
    steps = deal.pipeline.won - stage
    for j in range(1, steps + 1):
        deal.events.append((stage + j, last + (close - last) * j // steps))
    return deal


# -- writing ----------------------------------------------------------------------------------------
def forecast_day(deal: Deal, window: Window) -> int:
    """The day an open deal would be won if it moved on at every stage: its rep's forecast.

    Its next decision as simulated (after the anchor), then the median dwell of each later
    open stage. A close date here puts a deal in the period it would close in, so the open
    pipeline of a quarter holds the deals that can still be won in it, as in a real CRM.
    """
    stage = deal.events[-1][0]
    moment = deal.due or window.end_ms + int(deal.pipeline.stages[stage].dwell_days * DAY_MS)
    later = sum(s.dwell_days for s in deal.pipeline.stages[stage + 1 : deal.pipeline.open_count])
    return (moment + int(later * DAY_MS)) // DAY_MS


def _close_dates(deal: Deal, planted: bool, window: Window, rng: Rng) -> tuple[int, list[tuple[int, int, int]]]:
    """The final close day and the (old day, new day, ms) changes that led to it: at most two
    pushes, unless ``planted`` (3-5 pushes). A closed deal's second push moves past its real
    end, then the date lands on that end. An open deal's pushes past the anchor go to its
    forecast (:func:`forecast_day`); a first guess still ahead is re-forecast once at the last
    stage change or push, so every open deal ends on its forecast."""
    created_day = deal.created // DAY_MS
    if planted:
        return _planted_pushes(created_day, deal.forecast, window, rng)
    closed = deal.last_moment if deal.closed else None
    forecast = None if deal.closed else deal.forecast
    expected, rows = created_day + rng.randint(30, 90), []
    while len(rows) < 2:
        at = business_moment(workday(expected + 1), rng)
        if at > window.end_ms or (closed is not None and at >= closed):
            break
        later = expected + rng.randint(14, 45)
        if closed is not None and rows:  # a second push is the last: it moves past the real end
            later = max(later, closed // DAY_MS + rng.randint(0, 30))
        elif forecast is not None and (rows or later > window.anchor_day):
            later = forecast
        rows.append((expected, later, at))
        expected = later
    if closed is not None and closed // DAY_MS != expected:
        rows.append((expected, closed // DAY_MS, closed))
        expected = closed // DAY_MS
    if forecast is not None and forecast != expected:
        since = max(deal.last_moment, rows[-1][2] if rows else deal.created)
        rows.append((expected, forecast, min(window.end_ms, since + rng.randint(1, 120) * MINUTE_MS)))
        expected = forecast
    return expected, rows


def _planted_pushes(
    created_day: int, forecast: int, window: Window, rng: Rng
) -> tuple[int, list[tuple[int, int, int]]]:
    """3-5 pushes, each to a day already past by the next; the last to the deal's forecast (a
    week out at the least), so it counts in the quarter its rep's pipeline was sized for."""
    first = created_day + 7
    span = window.anchor_day - 1 - first
    count = min(rng.randint(3, 5), span // 12)
    day = first + rng.randint(0, span // (count + 1))
    step = (window.anchor_day - 1 - day) // count
    days = [day + i * step for i in range(count)] + [max(forecast, window.anchor_day + 7)]
    rows = [(days[i], days[i + 1], business_moment(workday(days[i] + 1), rng)) for i in range(count)]
    return days[-1], rows


def _activity_moments(deal: Deal, stale: bool, table: list[float], window: Window, rng: Rng) -> list[int]:
    start = deal.created
    end = deal.last_moment if deal.closed else window.end_ms
    count = max(1, bisect(table, rng.random()))
    moments = []
    if not deal.closed:
        if stale:
            last = in_business_hours(window.end_ms - rng.randint(STALE_MIN_DAYS * DAY_MS, STALE_MAX_DAYS * DAY_MS))
            last = max(start + MINUTE_MS, last)
        else:
            low = max(start, window.end_ms - FRESH_ACTIVITY_DAYS * DAY_MS)
            last = min(window.end_ms, max(low, in_business_hours(low + int(rng.random() * (window.end_ms - low)))))
        moments.append(last)
        end, count = last, count - 1
    for _ in range(count):
        moments.append(min(end, max(start, in_business_hours(start + int(rng.random() * (end - start))))))
    moments.sort()
    return moments


def _write_deal(
    deal: Deal,
    rep: Person,
    stale: bool,
    pushed: bool,
    table: list[float],
    window: Window,
    rng: Rng,
    sink: Sink,
) -> None:
    crm, stages = rep.crm, deal.pipeline.stages
    close_day, close_rows = _close_dates(deal, pushed, window, rng)
    history = [(t, "stage", stages[old].key, stages[new].key) for (old, _), (new, t) in pairwise(deal.events)]
    history += [(t, "close_date", day_text(old), day_text(new)) for old, new, t in close_rows]
    if deal.amount_was:
        was = max(1, round(deal.amount * deal.amount_was))
        history.append((rng.choice(deal.events[1:])[1], "amount", str(was), str(deal.amount)))
    history.sort(key=lambda h: h[0])
    for t, name, old, new in history:
        seq = sink.next_seq(crm, "deal_history")
        sink.add(
            "deal_history",
            {
                "crm": crm,
                "id": record_id(crm, "deal_history", seq),
                "seq": seq,
                "deal_id": deal.id,
                "field": name,
                "old_value": old,
                "new_value": new,
                "changed_at": iso_ms(t),
            },
        )
    moments = _activity_moments(deal, stale, table, window, rng)
    for moment in moments:
        sink.activity(rng, crm, rep.id, moment, deal.id, None)
    stage, entered = deal.events[-1]
    sink.add(
        "deals",
        {
            "crm": crm,
            "id": deal.id,
            "seq": deal.seq,
            "name": deal.name,
            "owner_id": rep.id,
            "amount": str(deal.amount),
            "currency": rep.currency,
            "pipeline_id": deal.pipeline.id,
            "stage_id": stages[stage].key,
            "close_date": day_text(close_day),
            "is_closed": int(deal.closed),
            "is_won": int(deal.won),
            "closed_at": iso_ms(entered) if deal.closed else None,
            "stage_entered_at": iso_ms(entered),
            "last_activity_at": iso_ms(moments[-1]),
            "lead_id": deal.lead_id,
            "created_at": iso_ms(deal.created),
            "modified_at": iso_ms(max(deal.created, history[-1][0] if history else 0)),
            "deleted_at": None,
        },
    )
