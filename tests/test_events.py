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
    ],
)
def test_mistakes_say_what_is_wrong_and_the_grammar(text: str, hint: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_events(text)
    assert hint in str(err.value)
    assert "separated by `;`" in str(err.value)


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
