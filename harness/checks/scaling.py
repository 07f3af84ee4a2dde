"""What each event of a timeline did to live sessions and to where clients land.

Per event (DESIGN.md, "Scaling"): the live sessions it disrupted, the clients it remapped compared with the
minimum any strategy could achieve, how long disrupted clients took to get a working session again, and how long
new pods took to carry their share. Sessions broken because their pod was deliberately removed are marked
*disrupted* here, so that continuity judges the topology and not the event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.client.records import SessionRecord
from harness.events import EventRecord

__all__ = ["assign_disruptions", "event_report", "minimum_remap", "scaling_report"]

SLACK = 1.0  # seconds: endpoint updates reach every proxy within this after an event ends
SHARE_WINDOW = 3.0  # seconds of sessions over which a new pod's share is measured
SHARE_FRACTION = 0.8  # a new pod "carries its share" at this fraction of an even share


def _broken(s: SessionRecord) -> bool:
    return s.violation is not None or s.error is not None


def _good(s: SessionRecord) -> bool:
    return s.connected and s.violation is None and s.error is None and bool(s.pods)


def assign_disruptions(sessions: Sequence[SessionRecord], events: Sequence[EventRecord]) -> int:
    """Mark broken sessions that were live on a pod an event removed or added; returns how many were marked."""
    marked = 0
    for session in sessions:
        if session.disrupted_by or not _broken(session):
            continue
        for event in events:
            # a pod the event removed, or one it added (that clients were remapped to mid-session)
            touched = set(event.removed) | set(event.added)
            if (
                touched & set(session.pods)
                and session.started <= event.ended + SLACK
                and session.ended >= event.started - SLACK
            ):
                session.disrupted_by = event.id
                marked += 1
                break
    return marked


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def minimum_remap(event: EventRecord, before: dict[str, str]) -> int:
    """The fewest clients any strategy must move for this event (``before``: client → pod before it): the
    clients of removed pods, and on a scale-up the even share the new pods must take."""
    on_removed = sum(1 for pod in before.values() if pod in event.removed)
    if event.action == "scale" and event.added and event.pods_after:
        return max(on_removed, math.ceil(len(before) * len(event.added) / len(event.pods_after)))
    return on_removed


def event_report(sessions: Sequence[SessionRecord], event: EventRecord, next_start: float | None) -> dict[str, Any]:
    by_client: dict[str, list[SessionRecord]] = {}
    for s in sorted(sessions, key=lambda s: s.started):
        by_client.setdefault(s.client, []).append(s)
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    window_end = next_start if next_start is not None else math.inf
    for client, history in by_client.items():
        earlier = [s for s in history if _good(s) and s.started < event.started]
        later = [s for s in history if _good(s) and event.ended + SLACK <= s.started < window_end]
        if earlier and later:
            before[client] = earlier[-1].pods[0]
            after[client] = later[0].pods[0]
    remapped = sum(1 for c in before if before[c] != after[c])
    minimum = minimum_remap(event, before)

    disrupted = [s for s in sessions if s.disrupted_by == event.id]
    recovery = []
    for s in disrupted:
        nxt = next((t for t in by_client.get(s.client, []) if t.started >= s.ended and _good(t)), None)
        if nxt is not None:
            recovery.append(nxt.started - event.started)

    share_time = None
    new_sessions = 0
    if event.added and event.pods_after:
        fair = len(event.added) / len(event.pods_after)
        later_sessions = [s for s in sessions if s.pods and event.ended <= s.started < window_end]
        new_sessions = sum(1 for s in later_sessions if s.pods[0] in event.added)
        t = event.ended
        last = max((s.started for s in later_sessions), default=t)
        while t + SHARE_WINDOW <= last + 1e-9:
            window = [s for s in later_sessions if t <= s.started < t + SHARE_WINDOW]
            if window:
                share = sum(1 for s in window if s.pods[0] in event.added) / len(window)
                if share >= SHARE_FRACTION * fair:
                    share_time = round(t + SHARE_WINDOW - event.started, 3)
                    break
            t += 0.5

    report: dict[str, Any] = {
        "id": event.id,
        "label": event.label,
        "duration_s": round(event.ended - event.started, 3),
        "removed": event.removed,
        "added": event.added,
        "error": event.error,
        "disrupted_sessions": len(disrupted),
        "clients_compared": len(before),
        "clients_remapped": remapped,
        "minimum_remap": minimum,
        "remap_excess": remapped - minimum,
        "recovered": len(recovery),
        "recovery_s": {"p50": _percentile(recovery, 50), "p99": _percentile(recovery, 99)},
        "sessions_on_new_pods": new_sessions if event.added else None,
        "new_pods_share_s": share_time,
    }
    report["reading"] = _reading(report)
    return report


def _reading(r: dict[str, Any]) -> str:
    parts = [
        f"{r['label']}: remapped {r['clients_remapped']} of {r['clients_compared']} clients "
        f"(minimum {r['minimum_remap']})"
    ]
    if r["disrupted_sessions"]:
        p50 = r["recovery_s"]["p50"]
        parts.append(
            f"{r['disrupted_sessions']} live sessions disrupted"
            + (f", clients back in a working session after {p50:g} s (p50)" if p50 is not None else "")
        )
    if r["added"]:
        if r["sessions_on_new_pods"] == 0:
            parts.append(f"new pods {', '.join(r['added'])} got no sessions at all")
        elif r["new_pods_share_s"] is None:
            parts.append(f"new pods {', '.join(r['added'])} never carried their share")
        else:
            parts.append(f"new pods carried their share after {r['new_pods_share_s']:g} s")
    if r["error"]:
        parts.append(f"the event failed: {r['error']}")
    return "; ".join(parts)


def scaling_report(sessions: Sequence[SessionRecord], events: Sequence[EventRecord]) -> list[dict[str, Any]]:
    """One report per event, each judged up to the next event."""
    reports = []
    for i, event in enumerate(events):
        next_start = events[i + 1].started if i + 1 < len(events) else None
        reports.append(event_report(sessions, event, next_start))
    return reports
