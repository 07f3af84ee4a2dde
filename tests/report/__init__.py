"""Run directories built by hand for the report tests: session and event records, latency histograms and series,
and a summary written by the real `harness.runs.judge`, so that the report reads exactly what a run leaves.

Five runs: one with scale events (nginx-hash, scale 3 → 5, then a pod killed), the same with an exit nobody asked
for and a harness failure (the summary keys a newer harness writes), a lucky pass of the seed recipe (every session
on one pod), a failing negative control (no-affinity, sessions served by several pods), and an empty one (no
session at all).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.client.records import Mode, SessionRecord, write_session
from harness.events import EventRecord
from harness.report.series import LatencySeries
from harness.runs import judge
from harness.stats import Histogram
from harness.topology import load_topology

T0 = 1_700_000_000.0
DURATION = 90.0


def session(
    client: str,
    pods: Sequence[str],
    started: float,
    *,
    length: float = 1.5,
    mode: Mode = Mode.POLLING,
    sticky_failures: int = 0,
    error: str | None = None,
) -> SessionRecord:
    record = SessionRecord(
        client=client,
        source=f"127.64.{int(client[1:]) // 250}.{int(client[1:]) % 250 + 1}",
        mode=mode,
        started=started,
        ended=started + length,
        sid=f"sid-{client}-{started:.1f}",
        pods=list(pods),
        counts={"handshake": 1, "poll": 3, "post": 2},
        connected=bool(pods),
        error=error,
    )
    if sticky_failures:
        record.sticky_failures = sticky_failures
        record.first_failure = "post 400: Invalid session"
    return record


def event_record(
    eid: str, at: float, label: str, action: str, before: list[str], after: list[str], error: str | None = None
) -> EventRecord:
    return EventRecord(
        id=eid,
        label=label,
        action=action,
        target="app",
        replicas=len(after) if action == "scale" else None,
        started=T0 + at,
        ended=T0 + at + 1.0,
        pods_before=before,
        pods_after=after,
        removed=[p for p in before if p not in after],
        added=[p for p in after if p not in before],
        error=error,
    )


def write_latency(run_dir: Path, samples: dict[str, list[tuple[float, float]]], worker: str = "0-1") -> None:
    """Whole-run histograms and the time series, as a load-generator process leaves them."""
    series = LatencySeries()
    hists: dict[str, Histogram] = {}
    for name, points in samples.items():
        for at, seconds in points:
            hists.setdefault(name, Histogram()).record(seconds)
            series.record(name, seconds, at=at)
    data = {name: h.to_json() for name, h in hists.items()}
    (run_dir / f"latency-{worker}.json").write_text(json.dumps(data), encoding="utf-8")
    (run_dir / f"series-latency-{worker}.json").write_text(json.dumps(series.to_json()), encoding="utf-8")


def write_run(
    reports: Path,
    name: str,
    topology: str,
    sessions: Sequence[SessionRecord],
    pods: list[str],
    *,
    events: Sequence[EventRecord] = (),
    latency: dict[str, list[tuple[float, float]]] | None = None,
    harness_failure: str | None = None,
) -> Path:
    run_dir = reports / name
    run_dir.mkdir(parents=True)
    with open(run_dir / "sessions-0-1.jsonl", "w", encoding="utf-8") as fh:
        for record in sessions:
            write_session(fh, record)
    if events:
        lines = [json.dumps(e.to_json()) for e in events]
        (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if latency:
        write_latency(run_dir, latency)
    meta = {
        "seed": 7,
        "users": len({s.client for s in sessions}),
        "duration_s": DURATION,
        "client_addresses": "unique",
        "started": T0,
        "ended": T0 + DURATION,
        "report_dir": str(run_dir),
    }
    topo = load_topology(topology)
    judge(run_dir, topo, backend="local", pods=pods, meta=meta, reports_dir=reports, harness_failure=harness_failure)
    return run_dir


def _latency(spikes: Sequence[float], base_ms: float = 3.0) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for k, name in enumerate(("handshake", "upgrade", "ack whoami")):
        points = []
        for step in range(int(DURATION * 2)):
            at = T0 + step / 2
            slow = any(0 <= at - T0 - s < 5 for s in spikes)
            ms = base_ms * (1 + k * 0.5) + (step % 7) * 0.3 + (25.0 if slow else 0.0)
            points.append((at, ms / 1000))
        out[name] = points
    return out


def _scaling_records() -> tuple[list[SessionRecord], list[EventRecord]]:
    """40 clients on 3 pods, scaled to 5 at 30 s, app-1 killed (replaced by app-5) at 60 s."""
    e1 = event_record(
        "e1", 30.0, "30s scale app 5", "scale", ["app-0", "app-1", "app-2"], [f"app-{i}" for i in range(5)]
    )
    e2 = event_record("e2", 60.0, "60s kill app", "kill", e1.pods_after, ["app-0", "app-2", "app-3", "app-4", "app-5"])
    sessions = []
    for i in range(40):
        client = f"c{i}"
        for k in range(44):
            t = T0 + (i % 10) * 0.2 + k * 2.0
            pod = f"app-{i % 3}"
            if t - T0 >= 31.5 and i % 5 in (3, 4):
                pod = f"app-{i % 5}"
            if t - T0 >= 61.5 and pod == "app-1":
                pod = "app-5"
            if pod == "app-1" and t - T0 <= 61.0 and t - T0 + 1.5 >= 59.5:
                sessions.append(session(client, [pod], t, error="connection reset by peer"))  # killed under it
            elif i in (7, 8) and k == 17:
                sessions.append(session(client, [pod, "app-3"], t))  # endpoints were being updated
            else:
                sessions.append(session(client, [pod], t))
    return sessions, [e1, e2]


def scaling_run(reports: Path, name: str = "20240101-000000-nginx-hash-aaaa") -> Path:
    """nginx-hash: 40 clients on 3 pods, scaled to 5 at 30 s, app-1 killed (replaced by app-5) at 60 s."""
    sessions, events = _scaling_records()
    pods = events[-1].pods_after
    return write_run(reports, name, "nginx-hash", sessions, pods, events=events, latency=_latency([30.0, 60.0]))


HARNESS_FAILURE = "event 60s kill app did not take effect: app-5 never answered a handshake"
UNPLANNED: list[dict[str, Any]] = [
    {
        "id": "x1",
        "what": "app-2",
        "at_s": 45.0,
        "exit_status": 137,
        "blame": "system under test",
        "disrupted_sessions": 4,
        "reading": "app-2 was killed by the kernel (out of memory) under load",
    },
    {
        "id": "x2",
        "what": "netd",
        "at_s": None,
        "exit_status": None,
        "blame": "harness",
        "disrupted_sessions": 0,
        "reading": "the network daemon went away; its exit status was not collected",
    },
]
EVENT_FACTS: dict[str, dict[str, Any]] = {
    "e1": {
        "live_at_event": 38,
        "broken": {"wrong_pod": 3, "reset": 2, "timeout": 0, "other": 1},
        "reconnect_s": {"p50": 0.25, "p99": 1.5},
        "new_pods_half_share_s": 4.5,
        "observed": "app-3, app-4 answered a handshake through the entry",
        "why": None,
    },
    "e2": {
        "live_at_event": 40,
        "broken": {"reset": 0},
        "reconnect_s": {"p50": None, "p99": None},
        "new_pods_half_share_s": None,
        "observed": None,
        "why": "app-5 never became ready, so the entry kept sending its share elsewhere",
    },
}


def troubled_run(reports: Path, name: str = "20240101-000400-nginx-hash-ffff") -> Path:
    """The scaling run with an exit nobody asked for (app-2 at 45 s) in its timeline and a harness failure, judged;
    then the unplanned exits and per-event facts of its summary set to known values (some of them None, as a
    harness writes them when it could not tell)."""
    sessions, (e1, e2) = _scaling_records()
    exited = event_record("x1", 45.0, "app-2 exited (status 137)", "exit", e1.pods_after, e1.pods_after)
    exited.target, exited.ended, exited.exit_status, exited.blame = "app-2", exited.started, 137, "system under test"
    run_dir = write_run(
        reports,
        name,
        "nginx-hash",
        sessions,
        e2.pods_after,
        events=[e1, exited, e2],
        latency=_latency([30.0, 60.0]),
        harness_failure=HARNESS_FAILURE,
    )
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert summary["harness_failure"] == HARNESS_FAILURE and summary["exit_code"] == 2
    summary["unplanned"] = UNPLANNED
    for report in summary["events"]:
        report.update(EVENT_FACTS.get(report["id"], {}))
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return run_dir


def lucky_run(reports: Path, name: str = "20240101-000100-seed-bbbb", topology: str = "seed") -> Path:
    """The seed recipe on a lucky day: every chain ended on app-0, so continuity passes although the recipe is
    broken (the seed topology expects that luck, ``expected_with: converged``; other topologies do not)."""
    sessions = [session(f"c{i}", ["app-0"], T0 + i * 0.1 + k * 4.0) for i in range(30) for k in range(20)]
    return write_run(reports, name, topology, sessions, ["app-0", "app-1", "app-2"], latency=_latency([]))


def failing_run(reports: Path, name: str = "20240101-000200-no-affinity-cccc") -> Path:
    """The no-affinity negative control: many sessions served by several pods, clients all over the place."""
    rng = random.Random(3)
    pods = ["app-0", "app-1", "app-2"]
    sessions = []
    for i in range(30):
        for k in range(20):
            first = rng.choice(pods)
            served = [first, rng.choice([p for p in pods if p != first])] if rng.random() < 0.6 else [first]
            sessions.append(session(f"c{i}", served, T0 + i * 0.1 + k * 4.0, sticky_failures=len(served) - 1))
    return write_run(reports, name, "no-affinity", sessions, pods, latency=_latency([]))


def empty_run(reports: Path, name: str = "20240101-000300-nginx-hash-dddd") -> Path:
    """A run in which no session was recorded at all."""
    return write_run(reports, name, "nginx-hash", [], ["app-0", "app-1", "app-2"])
