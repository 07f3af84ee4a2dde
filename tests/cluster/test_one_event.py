"""One-event timelines on the local backend, one per event kind, where nothing else keeps the machinery alive.

Each test brings a real topology up (app pods, nginx or HAProxy, the network daemon), runs a timeline of a single
event on its own thread, lets that thread end, and then checks what the event promised: every pod there is alive
and answers a handshake, the new pods were observed through the whole chain, the removed ones no longer answer,
and the process watch saw no exit nobody asked for. The watch itself is shown to see such an exit.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster.local.backend import LocalCluster, handshake
from harness.cluster.local.processes import find_run_processes
from harness.events import EventRunner, parse_events, read_event_records
from harness.topology import load_topology
from harness.watch import HARNESS, SYSTEM, ProcessWatch

SETTLE = 1.5  # seconds after the events thread ended: a parent-death signal would have arrived by then


@pytest.fixture
def run_id(request: pytest.FixtureRequest) -> Iterator[str]:
    rid = f"test-{os.getpid()}-" + "".join(ch if ch.isalnum() else "-" for ch in request.node.name[:40])
    yield rid
    deadline = time.monotonic() + 5
    while find_run_processes(rid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert find_run_processes(rid) == {}


def _cluster(name: str, tmp_path: Path, run_id: str) -> LocalCluster:
    return LocalCluster(load_topology(name), run_id=run_id, run_dir=tmp_path / run_id, seed=12)


def _one_event(c: LocalCluster, timeline: str) -> EventRunner:
    runner = EventRunner(c, parse_events(timeline), c.run_dir)
    runner.start()
    assert runner.finished.wait(60), "the event did not finish"
    assert runner._thread is not None
    runner._thread.join(5)
    assert not runner._thread.is_alive()  # the events thread is gone: nothing keeps its children alive now
    time.sleep(SETTLE)
    return runner


def _all_alive_and_answering(c: LocalCluster) -> None:
    for component in ("app", "tier"):
        for pod in c.pods(component):  # type: ignore[arg-type]
            assert c.processes[pod.name].alive(), f"{pod.name} died"
            assert c.pod_answers(pod), f"{pod.name} does not answer"


CASES = [
    # (topology, timeline, pods added, pods removed)
    ("nginx-hash", "0s scale app 5", ["app-3", "app-4"], []),
    ("nginx-hash", "0s scale app 1", [], ["app-1", "app-2"]),
    ("nginx-hash", "0s scale tier 3", ["nginx-2"], []),
    ("haproxy-cookie", "0s scale tier 1", [], ["haproxy-1"]),
    ("haproxy-cookie", "0s kill app", ["app-3"], ["?"]),
    ("nginx-hash", "0s kill tier", ["nginx-2"], ["?"]),
    ("no-affinity", "0s restart app", ["app-3", "app-4", "app-5"], ["app-0", "app-1", "app-2"]),
    ("nginx-hash", "0s restart tier", ["nginx-2", "nginx-3"], ["nginx-0", "nginx-1"]),
]


@pytest.mark.parametrize(("topology", "timeline", "added", "removed"), CASES, ids=[c[1][3:] for c in CASES])
def test_one_event_takes_effect_and_its_pods_outlive_the_events_thread(
    tmp_path: Path, run_id: str, topology: str, timeline: str, added: list[str], removed: list[str]
) -> None:
    with _cluster(topology, tmp_path, run_id) as c, ProcessWatch(c, c.run_dir) as watch:
        before = {p.name: p for p in c.pods("app") + c.pods("tier")}
        runner = _one_event(c, timeline)
        (record,) = runner.records
        assert runner.failure is None and record.error is None, record
        assert record.added == added
        if removed == ["?"]:  # a kill: one pod, chosen by the seed
            assert len(record.removed) == 1 and record.removed[0] in before
        else:
            assert record.removed == removed
        _all_alive_and_answering(c)
        for name in record.removed:  # both sides: the removed pod answered before, and does not now
            assert not c.pod_answers(before[name])
        if record.added and record.added[0].startswith("app-"):
            assert "answered handshakes through the entry" in (record.observed or ""), record.observed
            seen = {handshake(c.entry_url) for _ in range(60)}
            assert set(record.added) & seen  # still reached through the chain, after the thread ended
        watch.check()
        assert watch.exits == [] and watch.failure is None
        assert [p.name for p in c.pods(record.target)] == record.pods_after  # nobody left since  # type: ignore[arg-type]
    assert read_event_records(c.run_dir)[0].observed == record.observed


@pytest.mark.parametrize("timeline", ["0s lb-out node-1", "0s lb-in node-1"])
def test_one_balancer_event_takes_effect(tmp_path: Path, run_id: str, timeline: str) -> None:
    with _cluster("nginx-hash", tmp_path, run_id) as c, ProcessWatch(c, c.run_dir) as watch:
        if "lb-in" in timeline:
            c.set_node_in_balancer("node-1", False)
            assert c.node_in_balancer("node-1") is False  # it could have stayed out
        runner = _one_event(c, timeline)
        (record,) = runner.records
        assert record.error is None
        assert c.node_in_balancer("node-1") is ("lb-in" in timeline)
        _all_alive_and_answering(c)
        assert handshake(c.entry_url) is not None
        watch.check()
        assert watch.exits == []


def test_the_watch_records_an_exit_nobody_asked_for(tmp_path: Path, run_id: str) -> None:
    with _cluster("no-affinity", tmp_path, run_id) as c, ProcessWatch(c, c.run_dir, interval=0.1) as watch:
        victim = c.pods("app")[1]
        os.kill(c.processes[victim.name].pid, signal.SIGKILL)  # a crash: not through the cluster
        deadline = time.monotonic() + 5
        while not watch.exits and time.monotonic() < deadline:
            time.sleep(0.05)
        (gone,) = watch.exits
        assert (gone.target, gone.blame, gone.exit_status) == (victim.name, SYSTEM, -signal.SIGKILL)
        assert gone.removed == [victim.name] and watch.failure is None  # a finding about the app, not ours
        assert victim.name not in {p.name for p in c.pods("app")}
        assert victim.name not in {handshake(c.entry_url) for _ in range(30)}  # out of the endpoints
        os.kill(c.processes["netd"].pid, signal.SIGKILL)  # the harness's own machinery
        deadline = time.monotonic() + 5
        while watch.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watch.exits[-1].blame == HARNESS
        assert watch.failure is not None and "netd exited during the run" in watch.failure
    assert [r.action for r in read_event_records(c.run_dir)] == ["exit", "exit"]


def test_one_fault_event_breaks_connections_while_set_and_is_cleared(tmp_path: Path, run_id: str) -> None:
    with _cluster("nginx-hash", tmp_path, run_id) as c, ProcessWatch(c, c.run_dir) as watch:
        assert handshake(c.entry_url) is not None  # before: the chain answers
        runner = EventRunner(c, parse_events("0s fault reset_peer * 3s"), c.run_dir)
        runner.start()
        deadline = time.monotonic() + 10
        while not c.balancer_faults() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [f["name"] for f in c.balancer_faults() or []] == ["timeline-reset_peer"]
        assert runner._thread is not None
        runner._thread.join(5)
        assert not runner._thread.is_alive()  # the events thread is gone; the fault's clearing is still due
        assert all(handshake(c.entry_url) is None for _ in range(5))  # while set: every connection is reset
        deadline = time.monotonic() + 10
        while c.balancer_faults() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.balancer_faults() == []
        assert handshake(c.entry_url) is not None  # after: the chain answers again
        (record,) = read_event_records(c.run_dir)
        assert record.action == "fault" and record.error is None and runner.failure is None
        assert 2.5 <= record.ended - record.started < 8
        assert "cleared after" in (record.observed or "")
        _all_alive_and_answering(c)
        watch.check()
        assert watch.exits == []
