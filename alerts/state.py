"""Alert rows <-> lifecycle state, and findings <-> JSON (the alert row keeps its last finding).

The finding is kept so a resolution can re-draw the message that announced the alert (showing
it resolved) without asking the rules again, and so ``alerts list`` can say what was measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from alerts.lifecycle import AlertState
from rules.findings import Finding, SampleRecord, Subject


def fingerprint(rule_id: str, subject: Subject) -> str:
    """Stable id of (rule, subject): the same alert across evaluations, restarts and re-syncs."""
    key = f"{rule_id}\x00{subject.type}\x00{subject.id}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def state_of(row: Any) -> AlertState:
    return AlertState(
        state=row.state,
        severity=row.severity,
        consecutive=row.consecutive,
        first_seen_at=row.first_fired_at,
        last_seen_at=row.last_fired_at,
        firing_since=row.firing_since,
        resolved_at=row.resolved_at,
        last_notified_at=row.last_notified_at,
        notified_severity=row.notified_severity,
    )


def state_values(state: AlertState) -> dict[str, Any]:
    return {
        "state": state.state,
        "severity": state.severity,
        "consecutive": state.consecutive,
        "first_fired_at": state.first_seen_at,
        "last_fired_at": state.last_seen_at,
        "firing_since": state.firing_since,
        "resolved_at": state.resolved_at,
        "last_notified_at": state.last_notified_at,
        "notified_severity": state.notified_severity,
    }


def finding_json(finding: Finding) -> str:
    data = asdict(finding)
    data["evaluated_at"] = finding.evaluated_at.isoformat() if finding.evaluated_at else None
    return json.dumps(data, default=str, ensure_ascii=False)


def finding_from_json(text: str) -> Finding:
    data = json.loads(text)
    data["subject"] = Subject(**data["subject"])
    data["samples"] = tuple(SampleRecord(**s) for s in data.get("samples") or ())
    when = data.get("evaluated_at")
    data["evaluated_at"] = datetime.fromisoformat(when) if when else None
    return Finding(**data)
