"""Handshake continuity: did every request of a session reach the pod that created it?

This is the check that decides whether Socket.IO works at all behind a chain of balancers. A session breaks it
when more than one pod answered it, when a pod answered it with a "Session ID unknown" / "Invalid session"
kind of response, or when it was meant to upgrade to WebSocket and silently stayed on polling (python-engineio
only logs a warning). Two kinds of sessions are set apart rather than judged: those ended by a deliberate pod
removal (*disrupted*: the scaling check owns them) and those that never reached any pod (*errors*: refused,
timed out; they say the path is down, not that it is unsticky, and are reported so that they are not silently
dropped).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from harness.checks.base import MAX_EXAMPLES, CheckResult, Thresholds, Verdict, pct, rate, session_label
from harness.client.records import SessionRecord

__all__ = ["REASON_CATEGORIES", "ContinuityTally", "check_continuity", "is_transport_error", "violation_category"]

NAME = "continuity"

# in the order SessionRecord.violation tests them; a session counts under the first that applies
REASON_CATEGORIES = ("multi_pod", "wrong_pod_answer", "missed_upgrade")
_CATEGORY_TEXT = {
    "multi_pod": "served by several pods",
    "wrong_pod_answer": "answered by a pod that did not know the session",
    "missed_upgrade": "never upgraded to WebSocket",
    "other": "broken otherwise",
}


def is_transport_error(record: SessionRecord) -> bool:
    """No pod ever answered (not even anonymously: the connect never completed) and no sticky failure.

    A session of an app that does not tag its responses has no pods but did connect: it is judged, from its
    error responses and its upgrade, not counted as an error.
    """
    return not record.pods and not record.sticky_failures and not record.connected


def violation_category(record: SessionRecord) -> str | None:
    """Which kind of violation a session is (one of REASON_CATEGORIES, or "other"), None if it is not one."""
    if record.violation is None:
        return None
    if len(record.pods) > 1:
        return "multi_pod"
    if record.sticky_failures:
        return "wrong_pod_answer"
    if record.missed_upgrade:
        return "missed_upgrade"
    return "other"


class ContinuityTally:
    """The continuity check's counts, folded one record at a time (a run is judged as its records stream by)."""

    def __init__(self) -> None:
        self.sessions = self.judged = self.violations = self.errors = 0
        self.by_reason: Counter[str] = Counter({c: 0 for c in REASON_CATEGORIES})
        self.by_mode: dict[str, dict[str, int]] = {}
        self.disrupted: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.samples: dict[str, list[str]] = {}

    def add(self, record: SessionRecord) -> None:
        self.sessions += 1
        if record.disrupted_by is not None:
            self.disrupted[record.disrupted_by] += 1
            return
        if is_transport_error(record):
            self.errors += 1
            if len(self.error_samples) < MAX_EXAMPLES:
                self.error_samples.append(f"{session_label(record)}: {record.error or 'no answer'}")
            return
        self.judged += 1
        mode = self.by_mode.setdefault(record.mode.value, {"judged": 0, "violations": 0})
        mode["judged"] += 1
        category = violation_category(record)
        if category is None:
            return
        self.violations += 1
        mode["violations"] += 1
        self.by_reason[category] += 1
        found = self.samples.setdefault(category, [])
        if len(found) < MAX_EXAMPLES:
            found.append(f"{session_label(record)}: {record.violation}")

    def result(self, th: Thresholds) -> CheckResult:
        judged, violations, by_reason = self.judged, self.violations, self.by_reason
        violation_rate = rate(violations, judged)
        disrupted = sum(self.disrupted.values())
        figures: dict[str, Any] = {
            "sessions": self.sessions,
            "judged": judged,
            "violations": violations,
            "violation_rate": violation_rate,
            "max_violation_rate": th.max_violation_rate,
            "by_reason": dict(by_reason),
            "by_mode": self.by_mode,
            "disrupted": disrupted,
            "disrupted_by_event": dict(self.disrupted),
            "errors": self.errors,
            "error_samples": self.error_samples,
        }
        set_apart = _set_apart(disrupted, self.errors, self.error_samples)

        if judged == 0:
            if not self.sessions:
                reason = "no sessions were recorded"
            else:
                reason = f"none of {self.sessions} sessions could be judged: {set_apart}"
            return CheckResult(NAME, "n/a", reason, figures)

        head = (
            f"{violations} of {judged} judged sessions broke continuity "
            f"({pct(violation_rate)}, allowed {pct(th.max_violation_rate)})"
        )
        if violations:
            kinds = ", ".join(f"{n} {_CATEGORY_TEXT[c]}" for c, n in by_reason.most_common() if n)
            head += f": {kinds}"
        reason = head + (f"; not judged: {set_apart}" if set_apart else "")
        verdict: Verdict = "fail" if violation_rate > th.max_violation_rate else "pass"
        return CheckResult(NAME, verdict, reason, figures, _interleave(self.samples))


def check_continuity(sessions: Iterable[SessionRecord], th: Thresholds) -> CheckResult:
    """Judge every session that reached a pod and was not disrupted by a scaling event."""
    tally = ContinuityTally()
    for record in sessions:
        tally.add(record)
    return tally.result(th)


def _set_apart(disrupted: int, errors: int, error_samples: list[str]) -> str:
    parts = []
    if disrupted:
        parts.append(f"{disrupted} disrupted by the timeline's events (scaling, faults)")
    if errors:
        first = error_samples[0].split(": ", 1)[-1] if error_samples else ""
        parts.append(f"{errors} never reached a pod (first: {first})")
    return " and ".join(parts)


def _interleave(samples: dict[str, list[str]]) -> list[str]:
    """Up to MAX_EXAMPLES examples, taking one of each kind in turn so that every kind is shown."""
    out: list[str] = []
    queues = [list(samples[c]) for c in (*REASON_CATEGORIES, "other") if samples.get(c)]
    while queues and len(out) < MAX_EXAMPLES:
        for queue in queues:
            if queue and len(out) < MAX_EXAMPLES:
                out.append(queue.pop(0))
        queues = [q for q in queues if q]
    return out
