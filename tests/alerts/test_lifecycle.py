"""decide(): every branch by table, and the promises by property over random histories."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.lifecycle import AlertState, Timing, decide

T = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
DAY = timedelta(days=1)
NOTIFIED = AlertState("firing", "warn", 3, T - 3 * H, T - H, T - 3 * H, None, T - 2 * H, "warn")
PENDING = AlertState("pending", "warn", 1, T - H, T - H)
RESOLVED = replace(NOTIFIED, state="resolved", consecutive=0, resolved_at=T - H)
UNANNOUNCED = replace(NOTIFIED, last_notified_at=None, notified_severity=None)


@pytest.mark.parametrize(
    ("prior", "severity", "timing", "muted", "state", "notify", "reason"),
    [
        # new findings
        (None, "warn", Timing(), None, "firing", "firing", "started firing"),
        (None, "warn", Timing(for_=3), None, "pending", None, "pending: found 1 of 3"),
        (PENDING, "warn", Timing(for_=3), None, "pending", None, "pending: found 2 of 3"),
        (PENDING, "critical", Timing(for_=2), None, "firing", "firing", "started firing (held 2 evaluations)"),
        (RESOLVED, "warn", Timing(), None, "firing", "firing", "started firing"),
        (RESOLVED, "warn", Timing(for_=2), None, "pending", None, "pending: found 1 of 2"),
        # still firing
        (NOTIFIED, "warn", Timing(), None, "firing", None, "still firing; next reminder after"),
        (
            replace(NOTIFIED, last_notified_at=T - DAY),
            "warn",
            Timing(),
            None,
            "firing",
            "repeat",
            "last notified 24.0 h",
        ),
        (NOTIFIED, "warn", Timing(repeat_interval=2 * H), None, "firing", "repeat", "still firing"),
        (NOTIFIED, "critical", Timing(), None, "firing", "severity", "severity changed from warn to critical"),
        (
            replace(NOTIFIED, severity="critical", notified_severity="critical"),
            "warn",
            Timing(),
            None,
            "firing",
            "severity",
            "from critical to warn",
        ),
        (UNANNOUNCED, "warn", Timing(), None, "firing", "firing", "not announced yet"),
        # muted: state moves, nothing sent
        (None, "warn", Timing(), "silenced by #1", "firing", None, "started firing; not sent: silenced by #1"),
        (NOTIFIED, "critical", Timing(), "mute window 'x'", "firing", None, "not sent: mute window 'x'"),
        # gone
        (None, None, Timing(), None, None, None, "not found"),
        (PENDING, None, Timing(for_=3), None, None, None, "gone before it fired"),
        (RESOLVED, None, Timing(), None, "resolved", None, "still resolved"),
        (NOTIFIED, None, Timing(), None, "resolved", None, "the rule sends no resolution notices"),
        (NOTIFIED, None, Timing(send_resolved=True), None, "resolved", "resolved", "resolved"),
        (NOTIFIED, None, Timing(send_resolved=True), "silenced by #2", "resolved", None, "not sent: silenced by #2"),
        (UNANNOUNCED, None, Timing(send_resolved=True), None, "resolved", None, "resolved before it was announced"),
        (NOTIFIED, None, Timing(keep_firing_for=2 * H, send_resolved=True), None, "firing", None, "kept firing until"),
        (NOTIFIED, None, Timing(keep_firing_for=H, send_resolved=True), None, "resolved", "resolved", "resolved"),
        # muted when it started, gone now but kept firing: not announced late (its finding is gone)
        (UNANNOUNCED, None, Timing(keep_firing_for=2 * H), None, "firing", None, "kept firing until"),
    ],
)
def test_decide(prior, severity, timing, muted, state, notify, reason) -> None:
    decision = decide(prior, severity, timing, T, muted)
    assert (decision.state.state if decision.state else None) == state
    assert decision.notify == notify
    assert reason in decision.reason
    if notify is not None:
        assert decision.state.last_notified_at == T
    if muted is not None:
        assert decision.muted_by == muted


def test_a_notification_remembers_its_severity_and_a_resolution_forgets_it() -> None:
    fired = decide(None, "critical", Timing(), T).state
    assert (fired.notified_severity, fired.last_notified_at) == ("critical", T)
    gone = decide(fired, None, Timing(send_resolved=True), T + H).state
    assert (gone.state, gone.notified_severity, gone.resolved_at) == ("resolved", None, T + H)


# -- properties over random histories ---------------------------------------------------

step = st.tuples(
    st.sampled_from([None, "warn", "critical"]),  # finding this evaluation
    st.booleans(),  # muted
    st.integers(min_value=1, max_value=30),  # hours until the next evaluation
)
timings = st.builds(
    Timing,
    for_=st.integers(1, 4),
    repeat_interval=st.sampled_from([H, 6 * H, DAY]),
    keep_firing_for=st.sampled_from([timedelta(0), H, 5 * H]),
    send_resolved=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(timing=timings, steps=st.lists(step, min_size=1, max_size=40))
def test_promises_hold_over_any_history(timing: Timing, steps: list) -> None:
    state: AlertState | None = None
    now = T
    announced = False  # this episode announced
    last_sent: datetime | None = None
    run = 0  # evaluations in a row with a finding
    for severity, muted, gap in steps:
        before = state
        decision = decide(state, severity, timing, now, "muted" if muted else None)
        state = decision.state
        run = run + 1 if severity else 0
        # never sent while muted, and the reason always says something
        assert not (muted and decision.notify)
        assert decision.reason
        if severity is not None:
            # `for`: firing only after that many evaluations in a row; the severity is the finding's
            assert state is not None
            assert state.severity == severity
            assert (state.state == "firing") == (
                run >= timing.for_ or (before is not None and before.state == "firing")
            )
        if decision.notify == "firing":
            assert not announced
            announced = True
        if decision.notify in ("repeat", "severity", "resolved"):
            assert announced
        if decision.notify == "repeat":
            assert last_sent is not None
            assert now - last_sent >= timing.repeat_interval
        if decision.notify == "resolved":
            assert timing.send_resolved
        if decision.notify:
            last_sent = now
        # not found: never resolved while keep_firing_for holds
        if severity is None and before is not None and before.state == "firing" and state.state == "firing":
            assert now < before.last_seen_at + timing.keep_firing_for
        if state is None or state.state == "resolved":
            announced = False
            last_sent = None if state is None or state.state == "resolved" else last_sent
        # a firing alert found now and not muted is announced by the end of the evaluation (one only
        # kept firing by keep_firing_for is not: its finding is gone, announcing it would be stale)
        if state is not None and state.state == "firing" and severity is not None and not muted:
            assert state.last_notified_at is not None
        now += timedelta(hours=gap)
