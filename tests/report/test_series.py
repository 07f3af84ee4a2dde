"""Time series from records: latency series that merge and travel as JSON, session buckets that add up to the
summary's figures, and the clients' moves at each event that agree with the scaling report."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checks.scaling import assign_disruptions
from harness.client.records import SessionRecord, read_sessions
from harness.events import EventRecord, read_event_records
from harness.report.series import (
    LatencySeries,
    event_moves,
    natural_key,
    nice_bucket,
    read_latency_series,
    timeline,
)
from harness.runs import merged_latencies
from tests.report import T0, empty_run, failing_run, scaling_run, session, troubled_run, write_latency


def test_latency_series_buckets_by_wall_clock_and_survives_json() -> None:
    series = LatencySeries(5.0)
    series.record("handshake", 0.010, at=T0 + 1)
    series.record("handshake", 0.030, at=T0 + 4.9)
    series.record("handshake", 0.100, at=T0 + 5.0)
    series.record("ack", 0.002, at=T0 + 12)
    again = LatencySeries.from_json(json.loads(json.dumps(series.to_json())))
    assert again.names() == ["ack", "handshake"]
    points = again.percentile_series("handshake", 100)
    assert [x for x, _ in points] == [T0 + 2.5, T0 + 7.5]
    assert [round(y, 3) for _, y in points] == [30.0, 100.0]
    assert again.span() == (T0, T0 + 15)


def test_latency_series_merge_and_rebucket_keep_every_sample() -> None:
    a, b = LatencySeries(5.0), LatencySeries(5.0)
    for i in range(20):
        a.record("handshake", 0.001 * (i + 1), at=T0 + i)
        b.record("handshake", 0.002, at=T0 + i)
    a.merge(b)
    assert sum(h.count for h in a.series["handshake"].values()) == 40
    wide = a.rebucket(10.0)
    assert sorted(wide.series["handshake"]) == [T0, T0 + 10]
    assert sum(h.count for h in wide.series["handshake"].values()) == 40
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(LatencySeries(2.0))


def test_latency_series_of_another_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="schema"):
        LatencySeries.from_json({"schema": 99, "bucket_s": 5.0, "series": {}})


def test_read_latency_series_merges_every_process(tmp_path: Path) -> None:
    write_latency(tmp_path, {"handshake": [(T0 + 1, 0.01), (T0 + 2, 0.02)]}, worker="0-1")
    write_latency(tmp_path, {"handshake": [(T0 + 3, 0.03)]}, worker="1-2")
    merged = read_latency_series(tmp_path)
    assert merged is not None
    assert sum(h.count for h in merged.series["handshake"].values()) == 3
    assert read_latency_series(tmp_path / "nothing-here") is None


def _records(run_dir: Path) -> tuple[list[SessionRecord], list[EventRecord]]:
    sessions = list(read_sessions(sorted(run_dir.glob("sessions-*.jsonl"))))
    events = read_event_records(run_dir)
    assign_disruptions(sessions, events)
    return sessions, events


def test_timeline_adds_up_to_the_summary(tmp_path: Path) -> None:
    run_dir = scaling_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    sessions, events = _records(run_dir)
    tl = timeline(sessions, events, pods=summary["pods"])
    continuity = summary["checks"]["continuity"]["figures"]
    assert sum(sum(v) for v in tl.started_per_pod.values()) == sum(1 for s in sessions if s.pods)
    assert sum(tl.violations) == continuity["violations"] == 2
    assert sum(tl.disruptions) == continuity["disrupted"] == 13
    assert sum(tl.errors) == continuity["errors"] == 0
    assert [(round(x, 3), eid) for x, eid, _ in tl.markers] == [(30.0, "e1"), (60.0, "e2")]
    assert list(tl.started_per_pod) == ["app-0", "app-1", "app-2", "app-3", "app-4", "app-5"]
    # nothing on the new pods before the scale-up, nothing on the killed pod after the kill
    before = [i for i, start in enumerate(tl.starts) if start + tl.bucket_s <= 30.0]
    after = [i for i, start in enumerate(tl.starts) if start >= 62.0]
    assert before and after
    assert all(tl.started_per_pod["app-3"][i] == 0 for i in before)
    assert all(tl.started_per_pod["app-1"][i] == 0 for i in after)


def test_timeline_of_an_empty_run_has_no_buckets(tmp_path: Path) -> None:
    sessions, events = _records(empty_run(tmp_path))
    tl = timeline(sessions, events, pods=["app-0"])
    assert tl.starts == [] and tl.markers == [] and tl.live_per_pod == {}


def test_timeline_counts_sessions_that_never_reached_a_pod_as_errors(tmp_path: Path) -> None:
    sessions, events = _records(failing_run(tmp_path))
    sessions[0].pods, sessions[0].connected, sessions[0].sticky_failures = [], False, 0
    tl = timeline(sessions, events)
    assert sum(tl.errors) == 1


def test_live_sessions_are_time_weighted_per_bucket() -> None:
    # live from 1 s to 3 s: half of bucket [0, 2) and half of bucket [2, 4)
    tl = timeline([session("c1", ["app-0"], T0 + 1, length=2.0)], [], bucket_s=2.0, extra_times=[T0])
    assert tl.starts == [0.0, 2.0]
    assert tl.live_per_pod == {"app-0": pytest.approx([0.5, 0.5])}


def test_live_sessions_overlap_on_two_pods_and_sessions_without_a_pod_are_left_out() -> None:
    sessions = [
        session("c1", ["app-0"], T0, length=5.0),  # [0, 5)
        session("c2", ["app-1"], T0 + 1, length=1.0),  # [1, 2)
        session("c3", ["app-0", "app-1"], T0 + 2, length=4.0),  # [2, 6), on its handshake pod only
        session("c4", [], T0, length=6.0, error="connection refused"),  # never reached a pod
    ]
    ended_unknown = session("c5", ["app-1"], T0 + 3)
    ended_unknown.ended = 0.0  # counts as ending when it started: never live
    tl = timeline([*sessions, ended_unknown], [], pods=["app-0", "app-1", "app-2"], bucket_s=2.0)
    assert tl.starts == [0.0, 2.0, 4.0, 6.0]
    assert tl.live_per_pod["app-0"] == pytest.approx([1.0, 2.0, 1.5, 0.0])
    assert tl.live_per_pod["app-1"] == pytest.approx([0.5, 0.0, 0.0, 0.0])
    assert tl.live_per_pod["app-2"] == [0.0] * 4
    assert list(tl.live_per_pod) == list(tl.started_per_pod)


def test_live_sessions_agree_with_a_session_by_bucket_count() -> None:
    rng = random.Random(5)
    sessions = []
    for i in range(400):
        start = rng.uniform(0, 300)
        sessions.append(session(f"c{i}", [f"app-{i % 3}"], T0 + start, length=rng.choice([0.3, 4.0, 80.0, 400.0])))
    tl = timeline(sessions, [], bucket_s=5.0, extra_times=[T0])
    for pod, row in tl.live_per_pod.items():
        expected = [0.0] * len(tl.starts)
        for s in sessions:
            if s.pod != pod:
                continue
            for i, start in enumerate(tl.starts):
                overlap = min(s.ended - T0, start + 5.0) - max(s.started - T0, start)
                expected[i] += max(0.0, overlap) / 5.0
        assert row == pytest.approx(expected)


def test_live_sessions_of_a_run_add_up_to_the_time_sessions_were_live(tmp_path: Path) -> None:
    sessions, events = _records(scaling_run(tmp_path))
    tl = timeline(sessions, events)
    live_time = sum(sum(row) for row in tl.live_per_pod.values()) * tl.bucket_s
    assert live_time == pytest.approx(sum(s.ended - s.started for s in sessions if s.pods))
    before = [i for i, start in enumerate(tl.starts) if start + tl.bucket_s <= 30.0]
    assert before and all(tl.live_per_pod["app-3"][i] == 0 for i in before)
    assert max(tl.live_per_pod["app-3"]) > 0


def test_event_moves_agree_with_the_scaling_report(tmp_path: Path) -> None:
    run_dir = scaling_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    sessions, events = _records(run_dir)
    moves = event_moves(sessions, events)
    for m, report in zip(moves, summary["events"], strict=True):
        assert m.compared == report["clients_compared"]
        assert m.compared - m.stayed == report["clients_remapped"]
    kill = moves[1]
    assert kill.moves["app-1"] == {"app-5": 8}  # every client of the killed pod went to its replacement
    rows, columns = kill.pods()
    assert "app-1" in rows and "app-1" not in columns and "app-5" in columns


def test_an_unplanned_exit_moves_nobody_and_does_not_cut_the_planned_events_short(tmp_path: Path) -> None:
    run_dir = troubled_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    sessions, events = _records(run_dir)
    assert [e.id for e in events] == ["e1", "x1", "e2"]
    moves = event_moves(sessions, events)
    assert [m.id for m in moves] == ["e1", "x1", "e2"]
    assert moves[1].moves == {} and moves[1].compared == 0
    planned = [m for m in moves if m.id != "x1"]
    for m, report in zip(planned, summary["events"], strict=True):
        assert m.compared == report["clients_compared"]
        assert m.compared - m.stayed == report["clients_remapped"]


def test_nice_bucket_and_natural_order() -> None:
    assert nice_bucket(90) == 2.0
    assert nice_bucket(10) == 1.0
    assert nice_bucket(3600) == 60.0
    assert nice_bucket(10 * 86400) == 4 * 3600.0
    assert sorted(["app-10", "app-2", "app-1"], key=natural_key) == ["app-1", "app-2", "app-10"]


def test_the_swarm_writes_a_latency_series_beside_its_histograms(tmp_path: Path) -> None:
    # in a fresh interpreter: importing locust monkey-patches the process with gevent
    script = f"""
from pathlib import Path
from harness.swarm import _Run
run = _Run()
run.open(Path({str(tmp_path)!r}), "lone", "0")
for at, seconds in ((3.0, 0.010), (4.0, 0.020), (7.0, 0.040)):
    run.wall = lambda at=at: {T0!r} + at
    run.time("handshake", seconds)
run.close()
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    series = read_latency_series(tmp_path)
    assert series is not None
    assert [(round(x - T0, 1), round(y, 1)) for x, y in series.percentile_series("handshake", 100)] == [
        (2.5, 20.0),
        (7.5, 40.0),
    ]
    # the whole-run histograms are still read on their own (the series file is not one of them)
    assert merged_latencies(tmp_path)["handshake"].count == 3
