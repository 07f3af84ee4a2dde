"""Timelines of cluster events during a swarm: scaling, pod kills, rolling restarts, nodes out of the balancer.

A timeline is written the way people say it, ``"30s scale app 6; 60s scale app 2; 90s kill app; 120s restart
app; 100s lb-out node-1; 110s lb-in node-1; 130s fault reset_peer node-1 10s"``, and runs against any backend
through the `Cluster` interface. A ``fault`` sets one of the balancer's faults (`harness.net.faults`: a reset storm,
latency, a black hole, …; ``key=value`` attributes after the duration) on a node or on all (``*``) for its duration,
and its record ends when the fault is cleared; a timeline that stops early clears it too. Each
event is recorded with when it started and ended and which pods it removed and added, so that the checks can tell
a session broken by a deliberate removal (disrupted) from one broken by the topology (a violation).

An event is done only when its effect has been observed (`harness.observe`): new pods answer a handshake, removed
ones no longer do, the balancer has the node in or out. An event whose effect was not seen is the harness's own
failure (`EventRunner.failure`), and the run is not judged. Exits nobody asked for (`harness.watch`) are written to
the same timeline, as entries of action ``exit``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import UsageError
from harness.observe import PROBE_BUDGET, NotDone, observe_event, probe_addresses
from harness.topology import parse_duration

__all__ = ["Event", "EventRecord", "EventRunner", "append_event_record", "parse_events", "read_event_records"]

log = logging.getLogger(__name__)

Action = Literal["scale", "kill", "restart", "lb-out", "lb-in", "fault"]

GRAMMAR = (
    "events are `TIME ACTION ...` separated by `;`: `30s scale app|tier N`, `60s kill app|tier`, "
    "`90s restart app|tier`, `100s lb-out node-N`, `110s lb-in node-N`, "
    "`120s fault KIND node-N|* DURATION [attribute=value ...]` (KIND: a balancer fault such as reset_peer, latency, "
    "timeout)"
)
_COMPONENT = re.compile(r"^(app|tier)$")
_NODE = re.compile(r"^node-\d+$")


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the swarm started
    action: Action
    target: str  # "app" | "tier" | a node name (or "*" for a fault on every node)
    replicas: int | None = None  # for scale
    fault: str | None = None  # for fault: its kind (harness.net.faults)
    duration: float | None = None  # for fault: how long it is set
    params: tuple[tuple[str, Any], ...] = ()  # for fault: its attributes (stream, toxicity and the kind's own)

    @property
    def label(self) -> str:
        if self.action == "fault":
            attrs = "".join(f" {k}={v}" for k, v in self.params)
            return f"{self.at:g}s fault {self.fault} {self.target} {self.duration:g}s{attrs}"
        tail = f" {self.replicas}" if self.replicas is not None else ""
        return f"{self.at:g}s {self.action} {self.target}{tail}"

    def fault_request(self) -> dict[str, Any]:
        """The balancer's fault for this event, as `harness.net.faults.Fault.from_json` reads it."""
        attrs = dict(self.params)
        request: dict[str, Any] = {"kind": self.fault, "node": self.target, "name": f"timeline-{self.fault}"}
        for key in ("stream", "toxicity"):
            if key in attrs:
                request[key] = attrs.pop(key)
        request["params"] = attrs
        return request


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _parse_fault(text: str, at: float, target: str, rest: list[str]) -> Event:
    from harness.net.faults import Fault

    if not rest:
        raise UsageError(f"event {text!r}: fault takes a kind, a node (node-N or *) and a duration; {GRAMMAR}")
    kind, node, tail = target, rest[0], rest[1:]
    if not (_NODE.match(node) or node == "*") or not tail:
        raise UsageError(f"event {text!r}: fault takes a kind, a node (node-N or *) and a duration; {GRAMMAR}")
    try:
        duration = parse_duration(tail[0])
    except ValueError as exc:
        raise UsageError(f"event {text!r}: the fault's duration: {exc}; {GRAMMAR}") from None
    if duration <= 0:
        raise UsageError(f"event {text!r}: a fault lasts more than 0 s; {GRAMMAR}")
    params = []
    for item in tail[1:]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"event {text!r}: {item!r} is not attribute=value; {GRAMMAR}")
        params.append((key, _value(value)))
    event = Event(at, "fault", node, fault=kind, duration=duration, params=tuple(params))
    try:
        Fault.from_json(event.fault_request())  # a kind or an attribute the balancer does not know: said now
    except UsageError as exc:
        raise UsageError(f"event {text!r}: {exc}") from None
    return event


def _parse_one(text: str) -> Event:
    words = text.split()
    if len(words) < 3:
        raise UsageError(f"event {text!r}: too short; {GRAMMAR}")
    try:
        at = parse_duration(words[0])
    except ValueError as exc:
        raise UsageError(f"event {text!r}: {exc}; {GRAMMAR}") from None
    action, target, rest = words[1], words[2], words[3:]
    if action == "scale":
        if not _COMPONENT.match(target) or len(rest) != 1 or not rest[0].isdigit() or int(rest[0]) < 1:
            raise UsageError(f"event {text!r}: scale takes app or tier and a replica count >= 1; {GRAMMAR}")
        return Event(at, "scale", target, int(rest[0]))
    if action in ("kill", "restart"):
        if not _COMPONENT.match(target) or rest:
            raise UsageError(f"event {text!r}: {action} takes app or tier; {GRAMMAR}")
        return Event(at, action, target)  # type: ignore[arg-type]
    if action in ("lb-out", "lb-in"):
        if not _NODE.match(target) or rest:
            raise UsageError(f"event {text!r}: {action} takes a node name such as node-1; {GRAMMAR}")
        return Event(at, action, target)  # type: ignore[arg-type]
    if action == "fault":
        return _parse_fault(text, at, target, rest)
    raise UsageError(f"event {text!r}: unknown action {action!r}; {GRAMMAR}")


def parse_events(text: str | None) -> list[Event]:
    """Events from a timeline string, in time order."""
    if not text or not text.strip():
        return []
    events = [_parse_one(part.strip()) for part in text.split(";") if part.strip()]
    return sorted(events, key=lambda e: e.at)


@dataclass
class EventRecord:
    id: str  # "e1", "e2", … in time order
    label: str
    action: str
    target: str
    replicas: int | None
    started: float  # wall-clock seconds since the epoch
    ended: float
    pods_before: list[str] = field(default_factory=list)  # the component's pods before the event (app for lb-*)
    pods_after: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    error: str | None = None  # the event did not take effect: the harness's own failure
    observed: str | None = None  # what was seen that made it done
    unreached: list[str] = field(default_factory=list)  # new pods alive, but reached by no probe through the entry
    exit_status: int | None = None  # for an unplanned exit (action "exit")
    blame: str | None = None  # for an unplanned exit: "system under test" or "harness"

    @property
    def planned(self) -> bool:
        return self.action != "exit"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


EVENTS_FILE = "events.jsonl"
_APPEND = threading.Lock()  # the events thread and the process watch write the same file


def append_event_record(run_dir: Path, record: EventRecord) -> None:
    with _APPEND, open(run_dir / EVENTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record.to_json()) + "\n")


def read_event_records(run_dir: Path) -> list[EventRecord]:
    """Every entry of a run's timeline, planned events and unplanned exits, in time order."""
    path = run_dir / EVENTS_FILE
    if not path.is_file():
        return []
    records = [EventRecord(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return sorted(records, key=lambda r: r.started)


class EventRunner:
    """Runs a timeline against a cluster in a background thread, from ``start()`` on, recording each event."""

    def __init__(
        self,
        cluster: Any,  # harness.cluster.base.Cluster (Any: the events run on any backend)
        events: list[Event],
        run_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_event: Callable[[EventRecord], None] | None = None,
        probe_budget: float = PROBE_BUDGET,
    ) -> None:
        self.cluster = cluster
        self.probe_budget = probe_budget
        self.events = events
        self.run_dir = run_dir
        self.clock = clock
        self.wall = wall
        self.on_event = on_event
        self.records: list[EventRecord] = []
        self.failure: str | None = None  # the first event that did not take effect, in one line
        self.finished = threading.Event()  # every event applied (or the timeline stopped)
        self._probes = probe_addresses()
        self._stop = threading.Event()
        self._begin = 0.0
        self._thread: threading.Thread | None = None
        self._faults: dict[str, tuple[EventRecord, dict[str, Any], threading.Timer]] = {}  # set, not yet cleared
        self._faults_lock = threading.Lock()

    def start(self, begin: float | None = None) -> None:
        """Start the timeline; event times count from ``begin`` (the clock's now by default)."""
        if not self.events:
            return
        self._begin = self.clock() if begin is None else begin
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for event_id in list(self._faults):  # a fault outlives no timeline: cleared now, its record ends now
            self._clear_fault(event_id)

    def next_event(self) -> Event | None:
        """The first event not yet applied (for a progress line)."""
        upcoming = self.events[len(self.records) :]
        return upcoming[0] if upcoming else None

    def _run(self) -> None:
        try:
            for index, event in enumerate(self.events, start=1):
                if self._stop.wait(max(0.0, self._begin + event.at - self.clock())):
                    return
                record = self.apply(f"e{index}", event)
                self.records.append(record)
                if event.action == "fault" and record.error is None:
                    self._hold_fault(record, event)  # recorded when it is cleared, with its whole span
                else:
                    append_event_record(self.run_dir, record)
                if record.error is not None:
                    self.failure = f"event {record.label} did not take effect: " + " / ".join(
                        line.strip() for line in record.error.splitlines() if line.strip()
                    )
                if self.on_event is not None:
                    self.on_event(record)
                if self.failure is not None:  # the rest of the timeline would measure a cluster nobody meant
                    return
        finally:
            self.finished.set()

    def _hold_fault(self, record: EventRecord, event: Event) -> None:
        assert event.duration is not None
        request = event.fault_request()
        timer = threading.Timer(event.duration, self._clear_fault, args=(record.id,))
        timer.daemon = True
        with self._faults_lock:
            self._faults[record.id] = (record, request, timer)
        timer.start()

    def _clear_fault(self, event_id: str) -> None:
        with self._faults_lock:
            held = self._faults.pop(event_id, None)
        if held is None:
            return
        record, request, timer = held
        timer.cancel()
        try:
            self.cluster.clear_faults(node=request["node"], name=request["name"])
            if self._holds(request):
                raise NotDone(f"the balancer still holds {request['name']} on {request['node']}")
        except Exception as exc:
            log.warning("clearing the fault of %s failed: %s", record.label, exc)
            record.error = f"the fault was not cleared: {exc}"
            if self.failure is None:
                self.failure = f"event {record.label} did not take effect: {record.error}"
        else:
            record.observed = f"{record.observed}; cleared after {self.wall() - record.started:.1f} s"
        record.ended = self.wall()
        append_event_record(self.run_dir, record)
        if self.on_event is not None:
            self.on_event(record)

    def _holds(self, request: dict[str, Any]) -> bool:
        """Whether the balancer holds the fault of ``request`` (by name and node) now."""
        held = self.cluster.balancer_faults() or []
        return any(f.get("name") == request["name"] and f.get("node") == request["node"] for f in held)

    def _apply_fault(self, event: Event) -> str:
        """Set the event's fault; what was seen of it: the balancer holds it."""
        request = event.fault_request()
        self.cluster.add_fault(request)
        if not self._holds(request):
            raise NotDone(f"the balancer does not hold {request['name']} on {request['node']} after setting it")
        where = "every node" if event.target == "*" else event.target
        return f"the balancer holds {event.fault} on {where} for {event.duration:g} s"

    def apply(self, event_id: str, event: Event) -> EventRecord:
        """Apply one event and observe its effect; a failure of either is the record's ``error``."""
        if event.action == "fault":
            return self._apply_fault_event(event_id, event)
        component = event.target if event.action in ("scale", "kill", "restart") else "app"
        before = self.cluster.pods(component)
        started = self.wall()
        error = observed = None
        unreached: tuple[str, ...] = ()
        try:
            if event.action == "scale":
                self.cluster.scale(component, event.replicas)
            elif event.action == "kill":
                self.cluster.kill(component)
            elif event.action == "restart":
                self.cluster.restart(component)
            else:
                self.cluster.set_node_in_balancer(event.target, event.action == "lb-in")
        except Exception as exc:
            log.warning("event %s failed: %s", event.label, exc)
            error = str(exc)
        ended = self.wall()
        after = self.cluster.pods(component)
        names_before, names_after = [p.name for p in before], [p.name for p in after]
        if error is None:
            try:
                seen = observe_event(
                    self.cluster,
                    event.action,
                    component,
                    [p for p in before if p.name not in names_after],
                    [p for p in after if p.name not in names_before],
                    self._probes,
                    node=event.target if event.action.startswith("lb-") else None,
                    enabled=event.action == "lb-in",
                    budget=self.probe_budget,
                )
            except NotDone as exc:
                error = str(exc)
            else:
                observed, unreached = seen.text, seen.unreached
        return EventRecord(
            id=event_id,
            label=event.label,
            action=event.action,
            target=event.target,
            replicas=event.replicas,
            started=started,
            ended=ended,
            pods_before=names_before,
            pods_after=names_after,
            removed=[p for p in names_before if p not in names_after],
            added=[p for p in names_after if p not in names_before],
            error=error,
            observed=observed,
            unreached=list(unreached),
        )

    def _apply_fault_event(self, event_id: str, event: Event) -> EventRecord:
        pods = [p.name for p in self.cluster.pods("app")]
        started = self.wall()
        error = observed = None
        try:
            observed = self._apply_fault(event)
        except Exception as exc:
            log.warning("event %s failed: %s", event.label, exc)
            error = str(exc)
        return EventRecord(
            id=event_id,
            label=event.label,
            action=event.action,
            target=event.target,
            replicas=None,
            started=started,
            ended=self.wall(),
            pods_before=pods,
            pods_after=pods,
            error=error,
            observed=observed,
        )
