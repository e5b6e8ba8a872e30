"""The synthetic company's fixed vocabulary: pipelines, currencies, names, record ids, time stamps.

Shared by the generator and by :func:`sandbox.company_mutate.mutate`, so that records added
between syncs look exactly like generated ones (same id shapes, same stages, same text forms).

Times inside the generator are integers: milliseconds since the Unix epoch, UTC. Business
events (deal created, stage changed, activity, lead assigned) fall on weekdays between 12:00
and 20:00 UTC, which is the same calendar day from UTC-8 to UTC+3: a deal closed on the last
day of a quarter stays in that quarter whatever time zone the company reports in.
"""

from __future__ import annotations

import functools
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from random import Random
from typing import TypeVar

T = TypeVar("T")

SALESFORCE = "salesforce"
HUBSPOT = "hubspot"
CRMS = (SALESFORCE, HUBSPOT)

SALES_MANAGER = "Sales Manager"


class Rng(Random):
    """``random.Random`` whose choice and randint cost one float draw each.

    The generator draws tens of millions of them; the standard ones are several times
    slower. Seeded with a string, as everywhere here, it is the same on every machine.
    """

    def choice(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def weighted(self, values: Sequence[T], cumulative: Sequence[float]) -> T:
        """One of ``values``, by cumulative weights (see :func:`cumulative`)."""
        return values[min(len(values) - 1, bisect(cumulative, self.random() * cumulative[-1]))]


def cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


# -- record ids ------------------------------------------------------------------------
# Salesforce key prefixes; activities split by type into Task (00T) and Event (00U).
SF_PREFIX = {
    "teams": "00E",
    "users": "005",
    "leads": "00Q",
    "deals": "006",
    "deal_history": "017",
    "stages": "01J",
    "quotas": "0J9",
    "task": "00T",
    "event": "00U",
}
# HubSpot ids are numbers. A power-of-ten offset per object gives every id of one object the
# same number of digits, so their text order is also their numeric (seq) order.
HS_OFFSET = {
    "teams": 100_000,
    "users": 10_000_000,
    "leads": 1_000_000_000,
    "deals": 10_000_000_000,
    "deal_history": 20_000_000_000,
    "activities": 30_000_000_000,
}


def record_id(crm: str, table: str, seq: int, activity_type: str = "") -> str:
    """The id the CRM shows for row ``seq`` of ``table`` (activities need their type on Salesforce)."""
    if crm == SALESFORCE:
        if table == "activities":
            prefix = SF_PREFIX["event" if activity_type == "meeting" else "task"]
        else:
            prefix = SF_PREFIX[table]
        return f"{prefix}{seq:012d}AAA"
    return str(HS_OFFSET[table] + seq)


# -- time --------------------------------------------------------------------------------
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
BUSINESS_START_MS = 12 * HOUR_MS
BUSINESS_SPAN_MS = 8 * HOUR_MS
_EPOCH = date(1970, 1, 1)


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def to_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


@functools.lru_cache(maxsize=4096)
def day_text(day: int) -> str:
    """'YYYY-MM-DD' of a day number (cached: the generator formats millions of stamps)."""
    return to_date(day).isoformat()


@functools.lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return day_text(day) + "T"


# Every clock time of a day and every millisecond suffix, formatted once.
_CLOCK = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]
_MILLIS = [f".{m:03d}Z" for m in range(1000)]


def iso_ms(ms: int) -> str:
    """The store's bookkeeping form 'YYYY-MM-DDTHH:MM:SS.fffZ' (same text as ``store.iso_utc``)."""
    day, rest = divmod(ms, DAY_MS)
    second, milli = divmod(rest, 1000)
    return _day_prefix(day) + _CLOCK[second] + _MILLIS[milli]


def workday(day: int) -> int:
    """The day itself, or the Monday after a weekend day (1970-01-01 was a Thursday)."""
    weekday = (day + 3) % 7
    return day + 7 - weekday if weekday >= 5 else day


def business_moment(day: int, rng: Rng) -> int:
    return day * DAY_MS + BUSINESS_START_MS + int(rng.random() * BUSINESS_SPAN_MS)


HISTORY_DAYS = 730  # how far before the anchor the company's records go back
RECENT_DAYS = 90  # the "last 90 days" of a conversion-rate comparison
PRIOR_DAYS = 365  # the comparison's baseline: the year before those 90 days


@dataclass(frozen=True)
class Window:
    """The company's time frame: ``anchor`` is its today; nothing happens after its end of day."""

    anchor: date
    anchor_day: int
    start_day: int
    end_ms: int  # anchor 23:59:59.999 UTC
    quarter_start: date
    quarter_end: date

    @classmethod
    def of(cls, anchor: date) -> Window:
        day = day_number(anchor)
        start = quarter_start(anchor)
        return cls(anchor, day, day - HISTORY_DAYS, (day + 1) * DAY_MS - 1, start, next_quarter(start) - timedelta(1))

    @property
    def quarter_start_ms(self) -> int:
        return day_number(self.quarter_start) * DAY_MS

    @property
    def elapsed_days(self) -> int:
        """Days of the current quarter up to and including the anchor."""
        return (self.anchor - self.quarter_start).days + 1

    @property
    def quarter_days(self) -> int:
        return (self.quarter_end - self.quarter_start).days + 1

    @property
    def recent_ms(self) -> int:
        """Start of the last RECENT_DAYS (conversion drop window)."""
        return self.end_ms + 1 - RECENT_DAYS * DAY_MS


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def next_quarter(start: date) -> date:
    return date(start.year + 1, 1, 1) if start.month == 10 else date(start.year, start.month + 3, 1)


def previous_quarter(start: date) -> date:
    return date(start.year - 1, 10, 1) if start.month == 1 else date(start.year, start.month - 3, 1)


# -- pipelines -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    key: str  # what a deal stores: the Salesforce StageName, the HubSpot stage id
    label: str
    probability: float  # 0..1 for both CRMs (the Salesforce fake serves it as a percent)
    is_closed: bool = False
    is_won: bool = False
    advance: float = 0.0  # share of the deals leaving this open stage that move on (the rest are lost)
    dwell_days: float = 0.0  # median days a deal spends in this open stage


@dataclass(frozen=True)
class Pipeline:
    crm: str
    id: str
    label: str
    stages: tuple[Stage, ...]  # the open stages in funnel order, then won, then lost
    share: float  # of the CRM's deals

    @functools.cached_property
    def open_count(self) -> int:
        return sum(not s.is_closed for s in self.stages)

    @functools.cached_property
    def won(self) -> int:
        return self.open_count

    @functools.cached_property
    def lost(self) -> int:
        return self.open_count + 1

    def index(self, key: str) -> int:
        return next(i for i, s in enumerate(self.stages) if s.key == key)


# Stage-to-stage conversion falls down the funnel; about one deal in six is won.
PIPELINES = (
    Pipeline(
        SALESFORCE,
        "default",
        "Sales Process",
        (
            Stage("Prospecting", "Prospecting", 0.1, advance=0.80, dwell_days=29),
            Stage("Qualification", "Qualification", 0.2, advance=0.75, dwell_days=34),
            Stage("Needs Analysis", "Needs Analysis", 0.4, advance=0.70, dwell_days=36),
            Stage("Proposal", "Proposal", 0.6, advance=0.65, dwell_days=35),
            Stage("Negotiation", "Negotiation", 0.8, advance=0.60, dwell_days=28),
            Stage("Closed Won", "Closed Won", 1.0, is_closed=True, is_won=True),
            Stage("Closed Lost", "Closed Lost", 0.0, is_closed=True),
        ),
        1.0,
    ),
    Pipeline(
        HUBSPOT,
        "default",
        "Sales Pipeline",
        (
            Stage("appointmentscheduled", "Appointment Scheduled", 0.2, advance=0.80, dwell_days=28),
            Stage("qualifiedtobuy", "Qualified To Buy", 0.4, advance=0.75, dwell_days=32),
            Stage("presentationscheduled", "Presentation Scheduled", 0.6, advance=0.70, dwell_days=35),
            Stage("decisionmakerboughtin", "Decision Maker Bought-In", 0.8, advance=0.65, dwell_days=34),
            Stage("contractsent", "Contract Sent", 0.9, advance=0.60, dwell_days=27),
            Stage("closedwon", "Closed Won", 1.0, is_closed=True, is_won=True),
            Stage("closedlost", "Closed Lost", 0.0, is_closed=True),
        ),
        0.85,
    ),
    # A custom pipeline, as HubSpot numbers them: numeric pipeline and stage ids.
    Pipeline(
        HUBSPOT,
        "1190011",
        "Renewals",
        (
            Stage("1190012", "Renewal Due", 0.5, advance=0.85, dwell_days=34),
            Stage("1190013", "Quote Sent", 0.8, advance=0.80, dwell_days=28),
            Stage("1190014", "Renewed", 1.0, is_closed=True, is_won=True),
            Stage("1190015", "Churned", 0.0, is_closed=True),
        ),
        0.15,
    ),
)


def pipelines_of(crm: str) -> tuple[Pipeline, ...]:
    return tuple(p for p in PIPELINES if p.crm == crm)


def main_pipeline(crm: str) -> Pipeline:
    return next(p for p in PIPELINES if p.crm == crm and p.id == "default")


# -- money -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Currency:
    code: str
    usd_per_unit: float  # what salespulse's [company.fx_rates] needs with USD as reporting currency
    share: float  # of the reps who sell in it
    unit: int  # list prices are rounded to this many units


CURRENCIES = (
    Currency("USD", 1.0, 0.70, 100),
    Currency("EUR", 1.08, 0.15, 100),
    Currency("GBP", 1.27, 0.10, 100),
    Currency("JPY", 0.0067, 0.05, 10_000),
)
CURRENCY = {c.code: c for c in CURRENCIES}


def list_price(usd: float, currency: str) -> int:
    """A deal amount in the rep's currency, rounded the way a price list is."""
    cur = CURRENCY[currency]
    return max(cur.unit, round(usd / cur.usd_per_unit / cur.unit) * cur.unit)


# -- people, companies, words --------------------------------------------------------------------
COMPANY_NAME = "Acme Analytics"
EMAIL_DOMAIN = "acme-analytics.example"

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Mia", "Ethan", "Amara", "Kenji",
    "Priya", "Arjun", "Chloe", "Daniel", "Fatima", "Omar", "Hannah", "Jonas", "Lena", "Marco", "Nina",
    "Pedro", "Quinn", "Rosa", "Samuel", "Tara", "Umar", "Valentina", "Wei", "Xavier", "Yuki", "Zoe",
    "Aisha", "Bruno", "Camila", "Diego", "Elif", "Felix",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Garcia", "Chen", "Müller", "Okafor", "Tanaka", "Rossi", "Kowalski", "Nguyen", "Silva",
    "Johnson", "Patel", "Kim", "Dubois", "Haddad", "Jensen", "Lopez", "Novak", "O'Brien", "Petrov",
    "Quintero", "Rahman", "Schmidt", "Svensson", "Yilmaz", "Andersen", "Brown", "Costa", "Fischer",
    "Ivanova", "Khan", "Larsen", "Moreau", "Nakamura", "Popescu", "Reyes", "Santos", "Walker", "Zhang",
    "Bianchi",
)  # fmt: skip
COMPANY_WORDS = (
    "Northwind", "Bluepeak", "Silverline", "Redwood", "Ironbridge", "Brightwave", "Cobalt", "Evergreen",
    "Falcon", "Granite", "Harbor", "Juniper", "Keystone", "Lumen", "Meridian", "Nimbus", "Orchid",
    "Pioneer", "Quartz", "Riverbend", "Summit", "Tidal", "Umbra", "Vertex", "Willow", "Zenith", "Atlas",
    "Beacon", "Crescent", "Delta",
)  # fmt: skip
COMPANY_KINDS = (
    "Logistics", "Systems", "Health", "Foods", "Energy", "Robotics", "Capital", "Retail", "Media",
    "Pharma", "Labs", "Freight", "Insurance", "Motors", "Textiles", "Software", "Hotels", "Bank",
    "Airlines", "Telecom",
)  # fmt: skip
PRODUCTS = (
    "Platform License", "Enterprise Expansion", "Pilot", "Add-on Seats", "Analytics Suite",
    "Professional Services", "Data Connector Pack", "Premium Support",
)  # fmt: skip
TEAM_REGIONS = ("AMER East", "AMER West", "AMER Central", "EMEA North", "EMEA South", "DACH", "APAC", "LATAM")
TEAM_SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
# A rep's title and its quota, relative to the company's standard quota.
REP_TITLES = {"Account Executive": 0.9, "Senior Account Executive": 1.1, "Enterprise Account Executive": 1.3}

LEAD_SOURCES = ("Web", "Referral", "Event", "Partner", "Outbound")
LEAD_SOURCE_WEIGHTS = (0.40, 0.15, 0.15, 0.10, 0.20)

ACTIVITY_TYPES = {
    SALESFORCE: (("call", "email", "meeting", "task"), (0.35, 0.35, 0.15, 0.15)),
    HUBSPOT: (("call", "email", "meeting", "task", "note"), (0.30, 0.30, 0.13, 0.12, 0.15)),
}
SUBJECTS = {
    "call": ("Discovery call", "Follow-up call", "Pricing call", "Check-in call", "Left voicemail"),
    "email": ("Re: proposal", "Intro and next steps", "Pricing details", "Contract draft", "Meeting recap"),
    "meeting": ("Demo", "Kick-off meeting", "Executive briefing", "Technical deep dive", "Negotiation session"),
    "task": ("Send proposal", "Prepare quote", "Update forecast", "Book demo", "Follow up on legal review"),
    "note": ("Champion confirmed budget", "Competitor in the deal", "Needs security review", "Procurement involved"),
}


def company_name(rng: Rng) -> str:
    return f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)}"


@functools.lru_cache(maxsize=1024)
def slug(text: str) -> str:
    """A lowercase ASCII email-safe form of a name ('Müller' -> 'muller', "O'Brien" -> 'obrien')."""
    folded = text.lower().replace("ü", "u").replace("ö", "o").replace("ä", "a")
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum())


# -- random shapes -------------------------------------------------------------------------------
GROWTH = 0.8  # the company grows: a day at the anchor sees 1.8x the new records of a day two years before


def growth_moment(rng: Rng, window: Window, first_day: int) -> int:
    """A business moment in [first_day, anchor], more likely recent (linear density 1 -> 1 + GROWTH)."""
    span = window.anchor_day - window.start_day + 1
    x0 = max(0.0, (first_day - window.start_day) / span)
    norm = 1 + GROWTH / 2
    u = (x0 + GROWTH * x0 * x0 / 2) / norm
    u += rng.random() * (1 - u)
    x = (-1 + (1 + 2 * GROWTH * u * norm) ** 0.5) / GROWTH
    day = min(window.anchor_day, max(first_day, window.start_day + int(x * span)))
    shifted = workday(day)
    return business_moment(shifted if shifted <= window.anchor_day else day, rng)


def poisson_table(mean: float) -> list[float]:
    """Cumulative Poisson probabilities, for ``bisect(table, rng.random())`` draws."""
    table, term, total, k = [], pow(2.718281828459045, -mean), 0.0, 0
    while total < 1 - 1e-12 and k < 200:
        total += term
        table.append(total)
        k += 1
        term *= mean / k
    return table


def in_business_hours(ms: int) -> int:
    """The same day, its time of day squeezed into 12:00-20:00 UTC (keeps order within a day)."""
    day, rest = divmod(ms, DAY_MS)
    return day * DAY_MS + BUSINESS_START_MS + rest * BUSINESS_SPAN_MS // DAY_MS
