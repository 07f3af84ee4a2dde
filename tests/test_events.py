"""Event timelines: parsing with clear errors, and a runner that applies events in order against a cluster."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from harness.cluster.base import Pod
from harness.errors import UsageError
from harness.events import Event, EventRunner, parse_events, read_event_records


def test_parse_a_full_timeline_in_time_order() -> None:
    events = parse_events("60s scale app 2; 30s scale app 6; 90s kill app; 2m restart tier; 100s lb-out node-1; ")
    assert [e.label for e in events] == [
        "30s scale app 6",
        "60s scale app 2",
        "90s kill app",
        "100s lb-out node-1",
        "120s restart tier",
    ]
    assert events[0] == Event(30.0, "scale", "app", 6)
    assert parse_events("") == [] and parse_events(None) == []


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("30s scale app", "replica count"),
        ("30s scale app 0", "replica count"),
        ("30s scale db 3", "app or tier"),
        ("soon kill app", "not a duration"),
        ("30s explode app", "unknown action 'explode'"),
        ("30s lb-out app", "node name"),
        ("30s kill", "too short"),
        ("30s fault reset_peer node-1", "a kind, a node (node-N or *) and a duration"),
        ("30s fault reset_peer app 5s", "a kind, a node (node-N or *) and a duration"),
        ("30s fault reset_peer node-1 0s", "lasts more than 0 s"),
        ("30s fault nosuch node-1 5s", "unknown fault kind 'nosuch'"),
        ("30s fault latency node-1 5s colour=red", "unknown attribute(s) colour"),
        ("30s fault latency node-1 5s latency", "is not attribute=value"),
    ],
)
def test_mistakes_say_what_is_wrong_and_the_grammar(text: str, hint: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_events(text)
    assert hint in str(err.value)
    assert f"event {text!r}" in str(err.value)


def test_a_fault_event_reads_as_written_and_becomes_the_balancers_fault() -> None:
    (event,) = parse_events("20s fault latency * 15s latency=200 stream=upstream toxicity=0.5")
    assert event.label == "20s fault latency * 15s latency=200 stream=upstream toxicity=0.5"
    assert event.fault_request() == {
        "kind": "latency",
        "node": "*",
        "name": "timeline-latency",
        "stream": "upstream",
        "toxicity": 0.5,
        "params": {"latency": 200},
    }
    (storm,) = parse_events("30s fault reset_peer node-1 10s")
    assert (storm.at, storm.target, storm.fault, storm.duration) == (30.0, "node-1", "reset_peer", 10.0)


class FakeCluster:
    """Records calls; pods change as a real backend's would."""

    def __init__(self) -> None:
        self.app = [f"app-{i}" for i in range(3)]
        self.next = 3
        self.calls: list[tuple[Any, ...]] = []

    def pods(self, component: str = "app") -> list[Pod]:
        return [Pod(n, "app", "node-0", "127.4.0.1", 1) for n in self.app]

    def scale(self, component: str, replicas: int) -> None:
        self.calls.append(("scale", component, replicas))
        while len(self.app) < replicas:
            self.app.append(f"app-{self.next}")
            self.next += 1
        del self.app[replicas:]

    def kill(self, component: str) -> str:
        self.calls.append(("kill", component))
        victim = self.app.pop(0)
        self.app.append(f"app-{self.next}")
        self.next += 1
        return victim

    def restart(self, component: str) -> None:
        raise RuntimeError("restart refused")

    def set_node_in_balancer(self, node: str, enabled: bool) -> None:
        self.calls.append(("lb", node, enabled))
        self.out = set() if enabled else {node}

    def pod_answers(self, pod: Pod) -> bool:
        return pod.name in self.app  # a removed pod stops answering, a new one answers

    def node_in_balancer(self, node: str) -> bool:
        return node not in getattr(self, "out", set())

    def add_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("fault", fault["kind"], fault["node"]))
        self.faults = [*getattr(self, "faults", []), {"name": fault["name"], "node": fault["node"]}]
        return fault

    def clear_faults(self, *, node: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        self.calls.append(("clear", name, node))
        gone = [f for f in getattr(self, "faults", []) if f["name"] == name and f["node"] == node]
        self.faults = [f for f in getattr(self, "faults", []) if f not in gone]
        return gone

    def balancer_faults(self) -> list[dict[str, Any]]:
        return list(getattr(self, "faults", []))


def test_runner_applies_each_event_and_records_what_it_removed_and_added(tmp_path: Path) -> None:
    cluster = FakeCluster()
    now = [0.0]
    done = threading.Event()
    events = parse_events("1s scale app 5; 2s kill app; 3s scale app 2; 4s lb-out node-1; 5s restart app")
    runner = EventRunner(
        cluster,
        events,
        tmp_path,
        clock=lambda: now[0],
        wall=lambda: 1000 + now[0],
        on_event=lambda r: done.set() if r.id == "e5" else None,
        probe_budget=0,  # no entry to probe: new pods are asked directly
    )
    runner.start(begin=-100.0)  # every event is long due: the runner must still apply them in order
    assert done.wait(10)
    runner.stop()
    assert cluster.calls == [("scale", "app", 5), ("kill", "app"), ("scale", "app", 2), ("lb", "node-1", False)]
    records = read_event_records(tmp_path)
    assert [r.id for r in records] == ["e1", "e2", "e3", "e4", "e5"]
    assert records[0].added == ["app-3", "app-4"] and records[0].removed == []
    assert records[1].removed == ["app-0"] and records[1].added == ["app-5"]
    assert records[2].removed == ["app-3", "app-4", "app-5"]
    assert records[4].error == "restart refused"  # a failed event is recorded, and the run is the harness's failure
    assert runner.failure == "event 5s restart app did not take effect: restart refused"
    assert records[0].observed == (
        "app-3, app-4 answered directly, but no handshake through the entry reached them within 0 s"
    )
    assert records[3].observed == "the balancer has node-1 out of its rotation"
    assert json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])["label"] == "1s scale app 5"


def test_a_fault_is_set_held_for_its_duration_then_cleared_and_recorded_whole(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cleared = threading.Event()
    runner = EventRunner(
        cluster,
        parse_events("0s fault reset_peer node-1 0.3s"),
        tmp_path,
        on_event=lambda r: cleared.set() if "cleared" in (r.observed or "") else None,
        probe_budget=0,
    )
    runner.start()
    assert cleared.wait(10)
    assert cluster.calls == [("fault", "reset_peer", "node-1"), ("clear", "timeline-reset_peer", "node-1")]
    (record,) = read_event_records(tmp_path)
    assert record.action == "fault" and record.error is None and runner.failure is None
    assert record.observed.startswith("the balancer holds reset_peer on node-1 for 0.3 s; cleared after")
    assert 0.25 <= record.ended - record.started < 5  # the record spans the fault
    assert cluster.balancer_faults() == []
    runner.stop()


def test_a_timeline_stopped_early_clears_its_fault(tmp_path: Path) -> None:
    cluster = FakeCluster()
    set_ = threading.Event()
    runner = EventRunner(
        cluster, parse_events("0s fault timeout * 1h"), tmp_path, on_event=lambda r: set_.set(), probe_budget=0
    )
    runner.start()
    for _ in range(500):
        if cluster.balancer_faults():
            break
        threading.Event().wait(0.02)
    assert cluster.balancer_faults()  # set, and an hour to go
    runner.stop()
    assert cluster.balancer_faults() == []
    (record,) = read_event_records(tmp_path)
    assert record.ended - record.started < 60


def test_a_fault_the_balancer_does_not_hold_is_the_harness_failure(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_fault = lambda fault: fault  # type: ignore[method-assign]  # accepted, never held
    done = threading.Event()
    runner = EventRunner(
        cluster, parse_events("0s fault reset_peer node-2 5s"), tmp_path, on_event=lambda r: done.set(), probe_budget=0
    )
    runner.start()
    assert done.wait(10)
    runner.stop()
    assert runner.failure is not None and "does not hold timeline-reset_peer on node-2" in runner.failure
