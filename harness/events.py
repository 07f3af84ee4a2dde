"""Timelines of cluster events during a swarm: scaling, pod kills, rolling restarts, nodes out of the balancer.

A timeline is written the way people say it, ``"30s scale app 6; 60s scale app 2; 90s kill app; 120s restart
app; 100s lb-out node-1; 110s lb-in node-1"``, and runs against any backend through the `Cluster` interface. Each
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

Action = Literal["scale", "kill", "restart", "lb-out", "lb-in"]

GRAMMAR = (
    "events are `TIME ACTION ...` separated by `;`: `30s scale app|tier N`, `60s kill app|tier`, "
    "`90s restart app|tier`, `100s lb-out node-N`, `110s lb-in node-N`"
)
_COMPONENT = re.compile(r"^(app|tier)$")
_NODE = re.compile(r"^node-\d+$")


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the swarm started
    action: Action
    target: str  # "app" | "tier" | a node name
    replicas: int | None = None  # for scale

    @property
    def label(self) -> str:
        tail = f" {self.replicas}" if self.replicas is not None else ""
        return f"{self.at:g}s {self.action} {self.target}{tail}"


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

    def apply(self, event_id: str, event: Event) -> EventRecord:
        """Apply one event and observe its effect; a failure of either is the record's ``error``."""
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
