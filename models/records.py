"""The normalized records connectors yield, one model per stream.

These are the boundary between a CRM's wire format and the warehouse: a connector maps
a raw CRM record to one of these, and pydantic refuses anything that would put a wrong
number in front of a sales manager (a negative or absurd amount, an unknown currency
code, a naive timestamp, an activity type we do not know). A refused record is
quarantined with the validation message as its reason.

References (``owner_id``, ``opportunity_id``...) are CRM ids as the CRM gives them; the
sync engine turns them into warehouse ids (``<source>:<crm id>``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

# Larger than any real deal (a trillion in any currency) means a typo or a test value.
MAX_AMOUNT = Decimal("1000000000000")

CrmId = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Text = Annotated[str, StringConstraints(max_length=1000)]


def _clip(value: object, limit: int = 1000) -> object:
    """Long free text is kept, cut to the column size: a 5,000-character name is not an error."""
    return value[:limit] if isinstance(value, str) else value


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    external_id: CrmId
    updated_at: AwareDatetime | None = None


class RepRecord(Record):
    email: Annotated[str, StringConstraints(max_length=320, to_lower=True)] | None = None
    name: Text
    title: Text | None = None
    team_id: CrmId | None = None
    team: Text | None = None
    manager_id: CrmId | None = None
    is_active: bool = True
    hired_on: date | None = None
    created_at: AwareDatetime | None = None

    _clip = field_validator("name", "title", "team", mode="before")(classmethod(lambda cls, v: _clip(v)))


class StageRecord(Record):
    pipeline: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    api_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    label: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    sort_order: int
    probability: float = Field(ge=0, le=1)
    is_closed: bool
    is_won: bool
    is_active: bool = True


class LeadRecord(Record):
    name: Text | None = None
    company: Text | None = None
    email: Annotated[str, StringConstraints(max_length=320, to_lower=True)] | None = None
    owner_id: CrmId | None = None
    status: Annotated[str, StringConstraints(max_length=100)] | None = None
    lead_source: Annotated[str, StringConstraints(max_length=100)] | None = None
    is_qualified: bool = False
    is_converted: bool = False
    converted_at: AwareDatetime | None = None
    converted_opportunity_id: CrmId | None = None
    created_at: AwareDatetime
    assigned_at: AwareDatetime | None = None

    _clip = field_validator("name", "company", mode="before")(classmethod(lambda cls, v: _clip(v)))


class OpportunityRecord(Record):
    name: Text | None = None
    owner_id: CrmId
    amount: Decimal = Field(ge=0, le=MAX_AMOUNT, max_digits=18, decimal_places=2)
    currency: Currency
    pipeline: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    stage: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    probability: float | None = Field(None, ge=0, le=1)
    is_closed: bool
    is_won: bool
    created_at: AwareDatetime
    close_date: date | None = None
    closed_at: AwareDatetime | None = None
    stage_entered_at: AwareDatetime | None = None
    last_activity_at: AwareDatetime | None = None
    lead_id: CrmId | None = None
    crm_url: Annotated[str, StringConstraints(max_length=500)] | None = None

    _clip = field_validator("name", mode="before")(classmethod(lambda cls, v: _clip(v)))

    @field_validator("amount", mode="before")
    @classmethod
    def _round_cents(cls, value: object) -> object:
        # CRMs send floats like 1234.5600000001; cents are what the warehouse keeps.
        if isinstance(value, float | int | str) and not isinstance(value, bool):
            try:
                return Decimal(str(value)).quantize(Decimal("0.01"))
            except ArithmeticError:
                return value
        return value


class StageChangeRecord(Record):
    opportunity_id: CrmId
    from_stage: Annotated[str, StringConstraints(max_length=255)] | None = None
    to_stage: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    changed_at: AwareDatetime


class CloseDateChangeRecord(Record):
    opportunity_id: CrmId
    old_date: date | None = None
    new_date: date | None = None
    changed_at: AwareDatetime


class ActivityRecord(Record):
    type: Literal["call", "email", "meeting", "task", "note"]
    subject: Text | None = None
    rep_id: CrmId | None = None
    opportunity_id: CrmId | None = None
    lead_id: CrmId | None = None
    occurred_at: AwareDatetime
    created_at: AwareDatetime | None = None

    _clip = field_validator("subject", mode="before")(classmethod(lambda cls, v: _clip(v)))


class QuotaRecord(Record):
    rep_id: CrmId
    period_start: date
    period_end: date
    amount: Decimal = Field(ge=0, le=MAX_AMOUNT, max_digits=18, decimal_places=2)
    currency: Currency

    @field_validator("period_end")
    @classmethod
    def _ordered(cls, value: date, info) -> date:
        start = info.data.get("period_start")
        if start is not None and value < start:
            raise ValueError(f"period_end {value} is before period_start {start}")
        return value


class ExchangeRateRecord(Record):
    """A CRM's rate for one currency, stated against the CRM's corporate (company) currency."""

    currency: Currency
    base_currency: Currency
    base_per_unit: Decimal = Field(gt=0, max_digits=28, decimal_places=12)  # units of base per one unit
    valid_from: date | None = None
    valid_to: date | None = None  # exclusive
    is_dated: bool = False

    @field_validator("base_per_unit", mode="before")
    @classmethod
    def _places(cls, value: object) -> object:
        # An inverted CRM rate (1 / ConversionRate) has endless digits; twelve places are plenty.
        if isinstance(value, float | int | str | Decimal) and not isinstance(value, bool):
            try:
                return Decimal(str(value)).quantize(Decimal("0.000000000001"))
            except ArithmeticError:
                return value
        return value
