"""The process watch: everything a run started is watched until it is stopped on purpose.

A thread asks the cluster every quarter second for processes that exited without being asked to
(`Cluster.unplanned_exits`) and writes each to the run's timeline as an entry of action ``exit``, so that the
sessions it broke are attributed to it. A pod that exits is a finding about the system under test (a user's app
crashing under load); the harness's own machinery exiting (the network daemon), or failing while it runs (out of
file descriptors, `Cluster.harness_faults`, asked every two seconds), means the run cannot be judged, and
`ProcessWatch.failure` says so in one line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cluster.base import ProcessExit
from harness.events import EventRecord, append_event_record

__all__ = ["HARNESS", "SYSTEM", "ProcessWatch", "exit_record"]

log = logging.getLogger(__name__)

SYSTEM = "system under test"
HARNESS = "harness"


def _status_text(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if status < 0:
        return f"killed by signal {-status}"
    return f"exit status {status}"


def exit_record(index: int, gone: ProcessExit, begin: float | None) -> EventRecord:
    """The timeline entry of one unplanned exit (``begin``: when the swarm started, for the label)."""
    at = f"{gone.at - begin:.1f}s " if begin is not None else ""
    blame = HARNESS if gone.component == "harness" else SYSTEM
    pods = [gone.name] if gone.component != "harness" else []
    return EventRecord(
        id=f"x{index}",
        label=f"{at}{gone.name} exited ({_status_text(gone.status)})",
        action="exit",
        target=gone.name,
        replicas=None,
        started=gone.at,
        ended=gone.at,
        pods_before=pods,
        removed=pods,
        exit_status=gone.status,
        blame=blame,
    )


class ProcessWatch:
    """Watches a cluster's processes from ``start()`` to ``stop()``; use as a context manager."""

    def __init__(
        self,
        cluster: Any,  # harness.cluster.base.Cluster
        run_dir: Path,
        *,
        interval: float = 0.25,
        fault_every: float = 2.0,
        begin: float | None = None,
        on_exit: Callable[[EventRecord], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.run_dir = run_dir
        self.interval = interval
        self.fault_every = fault_every
        self._next_fault_look = 0.0
        self.begin = begin
        self.on_exit = on_exit
        self.exits: list[EventRecord] = []
        self.failure: str | None = None  # the harness's own machinery exited or failed: the run cannot be judged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ProcessWatch:
        self.begin = self.begin if self.begin is not None else time.time()
        self._thread = threading.Thread(target=self._run, name="process-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        self.check(faults=True)  # what exited, or failed, in the last interval

    def __enter__(self) -> ProcessWatch:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watch must not die of one bad look
                log.exception("process watch: looking at the cluster failed")

    def check(self, faults: bool = False) -> list[EventRecord]:
        """Record what exited since the last look; every ``fault_every`` seconds (or when ``faults``) also ask
        for faults of the harness's running machinery (`Cluster.harness_faults`)."""
        now = time.monotonic()
        if faults or now >= self._next_fault_look:
            self._next_fault_look = now + self.fault_every
            for fault in self.cluster.harness_faults():
                if self.failure is None:
                    self.failure = fault
                    log.warning("harness fault: %s", fault)
        found = []
        for gone in self.cluster.unplanned_exits():
            record = exit_record(len(self.exits) + 1, gone, self.begin)
            self.exits.append(record)
            append_event_record(self.run_dir, record)
            if record.blame == HARNESS and self.failure is None:
                self.failure = f"the harness's {gone.name} exited during the run ({_status_text(gone.status)})"
            log.warning("unplanned exit: %s", record.label)
            if self.on_exit is not None:
                self.on_exit(record)
            found.append(record)
        return found
