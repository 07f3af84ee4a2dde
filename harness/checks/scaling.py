"""What each event of a timeline did to live sessions and to where clients land.

Per event (DESIGN.md, "Scaling"): the sessions live when it started, the live sessions it broke and how (a
wrong-pod answer, a reset, a timeout), the clients it moved compared with the minimum the strategy allows, how long
broken sessions took to reconnect, and when new pods carried half their fair share of live sessions. Sessions
broken because their pod was deliberately removed or added are marked *disrupted* here, so that continuity judges
the topology and not the event. Unplanned exits (timeline entries of action ``exit``) disrupt sessions the same
way, but are reported apart (`exit_report`): they are findings, not scaling.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.client.records import SessionRecord
from harness.events import EventRecord

__all__ = [
    "ScalingHints",
    "assign_disruption",
    "assign_disruptions",
    "break_kind",
    "client_homes",
    "event_report",
    "exit_report",
    "hints_for",
    "minimum_remap",
    "scaling_report",
    "sessions_by_client",
]

SLACK = 1.0  # seconds: endpoint updates reach every proxy within this after an event ends
SHARE_WINDOW = 3.0  # seconds of sessions over which a new pod's share is measured
SHARE_FRACTION = 0.8  # a new pod "carries its share" at this fraction of an even share
HALF_SHARE = 0.5  # ... and half its share of *live* sessions, for long sessions
LIVE_STEP = 0.5  # seconds between looks at the live sessions after an event


@dataclass(frozen=True)
class ScalingHints:
    """What a topology's strategy promises on scaling, so that the report can hold it to that."""

    keeps_clients_on_scale_up: bool = False  # cookie affinity: clients with a cookie stay; only new ones move
    why_new_pods_starve: str | None = None  # why new pods get nothing, when the topology is built so


def hints_for(topology: Any) -> ScalingHints:
    """Hints from a `harness.topology.Topology`."""
    tier = topology.tier
    keeps = False
    if tier is not None:
        if getattr(tier, "kind", "") == "ingress-nginx":
            keeps = tier.affinity == "cookie" and tier.mode == "persistent"
        else:
            keeps = "cookie" in str(getattr(tier, "template", ""))
    why = None
    if (
        tier is not None
        and getattr(tier, "upstream", "") == "service"
        and topology.app.service.session_affinity.value == "ClientIP"
    ):
        why = (
            "the tier pods are the app Service's only clients, and kube-proxy's ClientIP affinity keeps each of "
            "them on the endpoint it already has: new endpoints receive only new clients"
        )
    return ScalingHints(keeps, why)


def _broken(s: SessionRecord) -> bool:
    return s.violation is not None or s.error is not None


def _good(s: SessionRecord) -> bool:
    return s.connected and s.violation is None and s.error is None and bool(s.pods)


def assign_disruption(session: SessionRecord, events: Sequence[EventRecord]) -> bool:
    """Mark a broken session that was live on a pod an event removed or added, or live while a fault of the
    balancer was set (a fault breaks connections, not pods: any broken session then, but one a pod answered
    wrongly or two pods served, which no fault explains); True when this marked it."""
    if session.disrupted_by or not _broken(session):
        return False
    for event in events:
        live = session.started <= event.ended + SLACK and session.ended >= event.started - SLACK
        if not live:
            continue
        if event.action == "fault":
            if not session.sticky_failures and len(session.pods) <= 1:
                session.disrupted_by = event.id
                return True
            continue
        # a pod the event removed, or one it added (that clients were remapped to mid-session)
        touched = set(event.removed) | set(event.added)
        if touched & set(session.pods):
            session.disrupted_by = event.id
            return True
    return False


def assign_disruptions(sessions: Iterable[SessionRecord], events: Sequence[EventRecord]) -> int:
    """Mark broken sessions that were live on a pod an event removed or added; returns how many were marked."""
    return sum(assign_disruption(session, events) for session in sessions)


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def minimum_remap(event: EventRecord, before: dict[str, str], hints: ScalingHints | None = None) -> int:
    """The fewest clients the strategy must move for this event (``before``: client → pod before it): the
    clients of removed pods, and on a scale-up the even share the new pods must take, |m-n|/max(m,n) of the
    clients for a consistent hash, none for cookie affinity (clients keep their cookies; new clients fill the
    new pods)."""
    on_removed = sum(1 for pod in before.values() if pod in event.removed)
    keeps = hints is not None and hints.keeps_clients_on_scale_up
    if event.action == "scale" and event.added and event.pods_after and not keeps:
        return max(on_removed, math.ceil(len(before) * len(event.added) / len(event.pods_after)))
    return on_removed


def break_kind(s: SessionRecord) -> str:
    """How a session broke: ``wrong_pod`` (a wrong-pod answer, or served by two pods), ``timeout``, ``reset``
    (refused, reset, closed, lost) or ``other`` (such as an upgrade that did not happen)."""
    if s.sticky_failures or len(s.pods) > 1:
        return "wrong_pod"
    text = (s.error or "").lower()
    if any(word in text for word in ("timed out", "timeout", "no ack in", "not acknowledged within")):
        return "timeout"
    return "reset" if text else "other"


def _live_at(sessions: Sequence[SessionRecord], at: float) -> list[SessionRecord]:
    return [s for s in sessions if s.connected and s.pods and s.started <= at < (s.ended or s.started)]


def _live_during(sessions: Sequence[SessionRecord], event: EventRecord, broken: Sequence[SessionRecord]) -> int:
    """Sessions live while the event ran (a rolling restart takes seconds), the ones it broke among them."""
    live = {
        id(s)
        for s in sessions
        if s.connected and s.pods and s.started <= event.ended + SLACK and (s.ended or s.started) >= event.started
    }
    return len(live | {id(s) for s in broken})


def _half_share_time(sessions: Sequence[SessionRecord], event: EventRecord, window_end: float) -> float | None:
    """Seconds after the event when the new pods first held half their fair share of the live sessions."""
    if not event.added or not event.pods_after:
        return None
    fair = len(event.added) / len(event.pods_after)
    relevant = [s for s in sessions if s.connected and s.pods and (s.ended or s.started) > event.ended]
    last = min(window_end, max((s.ended for s in relevant), default=event.ended))
    t = event.ended
    while t <= last:
        live = _live_at(relevant, t)
        if live and sum(1 for s in live if s.pods[0] in event.added) >= HALF_SHARE * fair * len(live):
            return round(t - event.started, 3)
        t += LIVE_STEP
    return None


def sessions_by_client(sessions: Iterable[SessionRecord]) -> dict[str, list[SessionRecord]]:
    """Each client's sessions in start order (what `client_homes` reads)."""
    by_client: dict[str, list[SessionRecord]] = {}
    for s in sorted(sessions, key=lambda s: s.started):
        by_client.setdefault(s.client, []).append(s)
    return by_client


def client_homes(
    by_client: dict[str, list[SessionRecord]], event: EventRecord, window_end: float
) -> dict[str, tuple[str, str]]:
    """Client → (pod before, pod after) for every client seen on both sides of an event (``by_client``: each
    client's sessions in start order, ``disrupted_by`` assigned). Before: its last session started before the
    event that worked or that the event broke (a live session of a moved client is where it was). After: its
    first good session once the event settled, before ``window_end`` (the next event)."""
    homes = {}
    for client, history in by_client.items():
        earlier = [
            s for s in history if s.pods and s.started < event.started and (_good(s) or s.disrupted_by == event.id)
        ]
        later = [s for s in history if _good(s) and event.ended + SLACK <= s.started < window_end]
        if earlier and later:
            homes[client] = (earlier[-1].pods[0], later[0].pods[0])
    return homes


def _recovery(
    disrupted: Sequence[SessionRecord], by_client: dict[str, list[SessionRecord]], since: float
) -> tuple[list[float], list[float]]:
    """For broken sessions: seconds from ``since`` to the client's next working session, and seconds from each
    break to the client's next connected session (its reconnection)."""
    recovery, reconnect = [], []
    for s in disrupted:
        later = [t for t in by_client.get(s.client, []) if t.started >= s.ended]
        good = next((t for t in later if _good(t)), None)
        if good is not None:
            recovery.append(good.started - since)
        connected = next((t for t in later if t.connected), None)
        if connected is not None:
            reconnect.append(connected.started - s.ended)
    return recovery, reconnect


def event_report(
    sessions: Sequence[SessionRecord],
    event: EventRecord,
    next_start: float | None,
    hints: ScalingHints | None = None,
) -> dict[str, Any]:
    by_client = sessions_by_client(sessions)
    window_end = next_start if next_start is not None else math.inf
    homes = client_homes(by_client, event, window_end)
    before = {client: pods[0] for client, pods in homes.items()}
    after = {client: pods[1] for client, pods in homes.items()}
    remapped = sum(1 for c in before if before[c] != after[c])
    minimum = minimum_remap(event, before, hints)

    disrupted = [s for s in sessions if s.disrupted_by == event.id]
    recovery, reconnect = _recovery(disrupted, by_client, event.started)
    broken: dict[str, int] = {}
    for s in disrupted:
        broken[break_kind(s)] = broken.get(break_kind(s), 0) + 1

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
        "live_at_event": _live_during(sessions, event, disrupted),
        "broken": broken,
        "reconnect_s": {"p50": _percentile(reconnect, 50), "p99": _percentile(reconnect, 99)},
        "sessions_on_new_pods": new_sessions if event.added else None,
        "new_pods_share_s": share_time,
        "new_pods_half_share_s": _half_share_time(sessions, event, window_end),
        "observed": event.observed,
        "unreached": list(event.unreached),
        "why": None,
    }
    if event.added and new_sessions == 0:
        if hints is not None and hints.why_new_pods_starve:
            report["why"] = (
                f"new pods alive and answering ({event.observed}), yet no session: {hints.why_new_pods_starve}"
            )
        else:
            report["why"] = f"new pods alive and answering ({event.observed}), yet the topology sent them no session"
    report["reading"] = _reading(report)
    return report


def _reading(r: dict[str, Any]) -> str:
    parts = [
        f"{r['label']}: remapped {r['clients_remapped']} of {r['clients_compared']} clients "
        f"(minimum {r['minimum_remap']})"
    ]
    if r["disrupted_sessions"]:
        p50 = r["reconnect_s"]["p50"]
        how = ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in sorted(r["broken"].items()))
        parts.append(
            f"{r['disrupted_sessions']} of {r['live_at_event']} live sessions broken ({how})"
            + (f", reconnected after {p50:g} s (p50)" if p50 is not None else "")
        )
    elif r["live_at_event"]:
        parts.append(f"none of {r['live_at_event']} live sessions broken")
    if r["added"]:
        if r["sessions_on_new_pods"] == 0:
            parts.append(f"new pods {', '.join(r['added'])} got no sessions at all")
            if r["why"]:
                parts.append(r["why"])
        elif r["new_pods_share_s"] is None:
            parts.append(f"new pods {', '.join(r['added'])} never carried their share")
        else:
            parts.append(f"new pods carried their share after {r['new_pods_share_s']:g} s")
    if r["error"]:
        parts.append(f"the event failed: {r['error']}")
    return "; ".join(parts)


def scaling_report(
    sessions: Sequence[SessionRecord], events: Sequence[EventRecord], hints: ScalingHints | None = None
) -> list[dict[str, Any]]:
    """One report per planned event, each judged up to the next one (unplanned exits: `exit_report`)."""
    planned = [e for e in events if e.planned]
    reports = []
    for i, event in enumerate(planned):
        next_start = planned[i + 1].started if i + 1 < len(planned) else None
        reports.append(event_report(sessions, event, next_start, hints))
    return reports


def exit_report(
    disrupted_by_event: Mapping[str, int], events: Sequence[EventRecord], begin: float | None
) -> list[dict[str, Any]]:
    """One line per process that exited without being asked to: what, when, how, and the sessions it broke
    (``disrupted_by_event``: sessions per ``disrupted_by``, as the continuity check counts them)."""
    out = []
    for e in events:
        if e.planned:
            continue
        disrupted = disrupted_by_event.get(e.id, 0)
        status = "unknown" if e.exit_status is None else str(e.exit_status)
        what = "a finding about the system under test" if e.blame != "harness" else "the harness's own fault"
        out.append(
            {
                "id": e.id,
                "what": e.target,
                "at_s": round(e.started - begin, 3) if begin is not None else None,
                "exit_status": e.exit_status,
                "blame": e.blame,
                "disrupted_sessions": disrupted,
                "reading": f"{e.label}: nobody asked it to (exit status {status}); {disrupted} live sessions "
                f"broken; {what}",
            }
        )
    return out
