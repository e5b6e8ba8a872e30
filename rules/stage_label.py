"""The label a person knows a deal's stage by, for sample records.

Deals carry the CRM's stage value: Salesforce's StageName is the label, but HubSpot's
``dealstage`` is an internal id ('decisionmakerboughtin', or '1190013' in a custom pipeline)
that means nothing in a Slack message. The ``stages`` table maps each (source, pipeline,
api_name) to its label.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select

from models.tables import stages


def stage_label(source: ColumnElement, pipeline: ColumnElement, stage: ColumnElement) -> ColumnElement[str]:
    """The stage's label, or the stage value itself when the warehouse does not know the stage."""
    s = stages.c
    label = (
        select(s.label)
        .where(s.source == source, s.pipeline == pipeline, s.api_name == stage)
        .order_by(s.id)
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(label, stage)
