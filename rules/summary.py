"""A rule's ``summary``: a one-line template filled from the finding, never code.

Templates use ``str.format`` fields (``{subject} is at {value:.0%} of pace``), but only the plain
names below: no attribute access, no indexing, no nested fields, so a rule file cannot reach
into objects. Each field's format spec is tried on a sample value at load time, so a bad
spec (``{subject:.0%}`` on a name) is a file error, not a failed alert at 9 a.m.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

from rules.findings import Finding

# Each placeholder with a sample of its type (used to try format specs when the file loads).
PLACEHOLDERS: dict[str, Any] = {
    "rule_id": "rule",
    "kind": "kind",
    "severity": "warn",
    "subject": "Ana Lima",  # the subject's display name
    "subject_type": "rep",
    "subject_id": "salesforce:005",
    "team": "West",  # empty when the subject has no team
    "value": 0.5,
    "baseline": 1.0,
    "sample_size": 10,
    "unit": "share",
    "explanation": "explanation",
    "evaluated_at": datetime(2026, 1, 1, tzinfo=UTC),
}


def template_problems(template: str) -> list[str]:
    """What is wrong with a summary template (empty: it is fine)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"summary is not a valid template ({exc}); write literal braces as '{{{{' and '}}}}'"]
    problems: list[str] = []
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            problems.append(f"summary placeholder {{{name}}} is not one of: {', '.join(PLACEHOLDERS)}")
            continue
        if conversion not in (None, "s", "r"):
            problems.append(f"summary placeholder {{{name}}}: conversion !{conversion}; expected !s or !r")
        elif spec and "{" in spec:
            problems.append(f"summary placeholder {{{name}}}: nested fields in a format spec are not supported")
        else:
            try:
                format(PLACEHOLDERS[name], spec or "")
            except (ValueError, TypeError) as exc:
                problems.append(f"summary placeholder {{{name}:{spec}}}: {exc}")
    return problems


def placeholder_values(finding: Finding) -> dict[str, Any]:
    return {
        "rule_id": finding.rule_id,
        "kind": finding.kind,
        "severity": finding.severity,
        "subject": finding.subject.name,
        "subject_type": finding.subject.type,
        "subject_id": finding.subject.id,
        "team": finding.subject.team or "",
        "value": finding.value,
        "baseline": finding.baseline,
        "sample_size": finding.sample_size,
        "unit": finding.unit,
        "explanation": finding.explanation,
        "evaluated_at": finding.evaluated_at or datetime(1970, 1, 1, tzinfo=UTC),
    }


def render_summary(template: str, finding: Finding) -> str:
    """The template filled in; the loader has checked it, so only odd values can make it fail."""
    try:
        return string.Formatter().vformat(template, (), placeholder_values(finding))
    except (ValueError, TypeError, KeyError, IndexError):
        return finding.explanation
