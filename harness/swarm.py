"""Locust glue: the one module of the harness that imports locust (and so gevent).

Locustfiles in ``scenarios/`` subclass `StickyUser`: each user is one simulated client with its own source
address that runs Socket.IO sessions one after another. Every session is written as a JSON line to the run
directory (one file per load-generator process) for the checks, and reported to Locust as request events:
the Engine.IO handshake, the WebSocket upgrade, POSTs and acknowledged calls are timed, and a wrong-pod answer
or a session that broke continuity is a Locust failure.

Options added to Locust's command line:
  --harness-run-dir DIR      where session records go (default: a new run directory under reports/)
  --client-addresses MODE    unique | shared-24 | single (see harness.net.addresses)
  --calls N                  acknowledged calls per session
  --session-length DURATION  how long each session stays connected (default 0: short sessions)
  --topology NAME            bring up this topology on the local backend for the run, judge it, take it down
  --attach NAME              use a cluster brought up by ``harness up --name NAME`` and judge against it
  --seed N                   seed of the local backend's random choices (with --topology)
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar, cast

from locust import User, events
from locust.env import Environment
from locust.user.task import LOCUST_STATE_STOPPING

from harness import runs
from harness.client.records import Exchange, ExchangeKind, Mode, SessionRecord, write_session
from harness.client.session import Backoff, SimulatedClient
from harness.errors import HarnessError
from harness.net.addresses import ClientAddressMode, client_address
from harness.stats import Histogram
from harness.topology import parse_duration

__all__ = ["StickyUser", "StickyViolation"]

log = logging.getLogger(__name__)

_TIMED = {
    ExchangeKind.HANDSHAKE: "handshake",
    ExchangeKind.UPGRADE: "upgrade",
    ExchangeKind.POST: "post",
    ExchangeKind.ACK: "ack",
}


class StickyViolation(Exception):
    """A session that was not served by one pod from start to end."""


class _Run:
    """Process-wide state of a swarm: where records go, which client number comes next."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.fh: Any = None
        self.lock = threading.Lock()
        self.counter = itertools.count()
        self.offset = 0
        self.session_owner: Any = None  # a cluster (and its verdict) this process brought up or attached to
        self.sessions = 0
        self.violations = 0
        self.latency: dict[str, Histogram] = {}
        import time as wall_time

        from harness.report.series import LatencySeries

        self.wall = wall_time.time  # when a latency was recorded: the report's series are by wall clock
        self.latency_series = LatencySeries()  # the same latencies per 5 s of wall clock, for the report
        self.name = ""

    def open(self, run_dir: Path, worker: int) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.name = f"{worker}-{os.getpid()}"
        self.fh = open(run_dir / f"sessions-{self.name}.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def time(self, name: str, seconds: float) -> None:
        with self.lock:
            hist = self.latency.get(name)
            if hist is None:
                hist = self.latency[name] = Histogram()
            hist.record(seconds)
            self.latency_series.record(name, seconds, at=self.wall())

    def write(self, record: SessionRecord) -> None:
        with self.lock:
            self.sessions += 1
            if record.violation:
                self.violations += 1
            if self.fh is not None:
                write_session(self.fh, record)
                self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if self.run_dir is not None and self.latency:
            data = {name: h.to_json() for name, h in self.latency.items()}
            (self.run_dir / f"latency-{self.name}.json").write_text(json.dumps(data), encoding="utf-8")
            series = json.dumps(self.latency_series.to_json())
            (self.run_dir / f"series-latency-{self.name}.json").write_text(series, encoding="utf-8")


RUN = _Run()


class _Live:
    """Live figures of this process for the progress line: written to ``status-<pid>.json`` every second."""

    def __init__(self) -> None:
        self.sessions_live = 0
        self.greenlet: Any = None

    def start(self, environment: Environment) -> None:
        import gevent

        def loop() -> None:
            while True:
                self.write(environment)
                gevent.sleep(1.0)

        self.greenlet = gevent.spawn(loop)

    def write(self, environment: Environment) -> None:
        if RUN.run_dir is None:
            return
        runner = environment.runner
        status = {
            "users": runner.user_count if runner is not None else 0,
            "live_sessions": self.sessions_live,
            "sessions": RUN.sessions,
            "violations": RUN.violations,
        }
        tmp = RUN.run_dir / f".status-{os.getpid()}.json"
        tmp.write_text(json.dumps(status), encoding="utf-8")
        tmp.replace(RUN.run_dir / f"status-{os.getpid()}.json")

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None


LIVE = _Live()


def _duration(text: str) -> float:
    import argparse

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("sticky-harness")
    group.add_argument("--harness-run-dir", default="", help="directory for session records (default: a new run)")
    group.add_argument(
        "--client-addresses",
        choices=["unique", "shared-24", "single"],
        default="unique",
        help="source addresses of simulated clients",
    )
    group.add_argument("--calls", type=int, default=3, help="acknowledged calls per session")
    group.add_argument(
        "--session-length",
        type=_duration,
        default=0.0,
        help="how long each session stays connected, e.g. 30s (default 0: connect, call, disconnect)",
    )
    group.add_argument(
        "--no-whoami",
        action="store_true",
        help="the app has no whoami event (your own app): make the calls echo calls",
    )
    group.add_argument("--topology", default="", help="bring up this topology on the local backend and judge it")
    group.add_argument("--attach", default="", help="use the cluster of `harness up --name NAME` and judge it")
    group.add_argument("--seed", type=int, default=None, help="seed of the local backend (with --topology)")
    group.add_argument("--harness-reports-dir", default="", help="where runs and `harness up` clusters live")


def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:  # run_single_user or a library user: records go nowhere unless opened
        return
    try:
        owner = runs.open_for_locust(
            topology=options.topology or None,
            attach=options.attach or None,
            run_dir=options.harness_run_dir or None,
            seed=options.seed,
            host=environment.host,
            reports_dir=Path(options.harness_reports_dir).resolve() if options.harness_reports_dir else None,
        )
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    RUN.session_owner = owner
    owner.meta["session_length_s"] = options.session_length
    if owner.entry_url and not environment.host:
        environment.host = owner.entry_url
    worker = getattr(environment.runner, "worker_index", 0) if environment.runner else 0
    RUN.offset = worker * 100_000
    RUN.open(owner.run_dir, worker)


def _on_test_start(environment: Environment, **_: Any) -> None:
    LIVE.start(environment)


def _on_quitting(environment: Environment, **_: Any) -> None:
    LIVE.stop()
    RUN.close()
    owner = RUN.session_owner
    if owner is not None:
        code = owner.finish()
        if code is not None:
            environment.process_exit_code = code


# Registered at import, as Locust expects of a locustfile's helpers.
events.init_command_line_parser.add_listener(_add_options)
events.init.add_listener(_on_init)
events.test_start.add_listener(_on_test_start)
events.quitting.add_listener(_on_quitting)


class StickyUser(User):
    """One simulated Socket.IO client with its own source address, running sessions one after another."""

    abstract = True
    mode: ClassVar[Mode] = Mode.UPGRADE
    think_time: ClassVar[tuple[float, float]] = (0.05, 0.3)  # between sessions that worked

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        self.calls = options.calls if options is not None else 3
        self.session_length = float(getattr(options, "session_length", 0.0) or 0.0)
        self.backoff = Backoff()
        self.whoami = not (options is not None and options.no_whoami)
        address_mode = options.client_addresses if options is not None else "unique"
        index = RUN.offset + next(RUN.counter)
        self.client_id = f"c{index}"
        self.source = client_address(index, cast(ClientAddressMode, address_mode))
        self.client: SimulatedClient | None = None
        self._previous_failed = False
        self._retry = 0  # broken sessions in a row

    def wait_time(self) -> float:
        """After a session that worked, a short think time; after a broken one, socket.io-client's
        reconnection delay (1 s growing to 5 s, randomisation 0.5)."""
        if self._previous_failed:
            return self.backoff.next_delay()
        self.backoff.reset()
        return self.backoff.rng.uniform(*self.think_time)

    def _stopping(self) -> bool:
        return self._state == LOCUST_STATE_STOPPING

    def on_start(self) -> None:
        self.client = SimulatedClient(
            self.client_id,
            self.source,
            self.host or "",
            sink=RUN.write,
            on_exchange=self._report_exchange,
            whoami=self.whoami,
        )

    def run_session(self) -> SessionRecord:
        """One session; report it to Locust and to the run's records."""
        assert self.client is not None
        LIVE.sessions_live += 1
        try:
            record = self.client.run_session(
                self.mode,
                calls=self.calls,
                length=self.session_length,
                should_stop=self._stopping,
                retry=self._retry,
            )
        finally:
            LIVE.sessions_live -= 1
        duration_ms = max(0.0, (record.ended - record.started) * 1000)
        problem = record.violation or record.error
        self.environment.events.request.fire(
            request_type="SESSION",
            name=self.mode.value,
            response_time=duration_ms,
            response_length=0,
            exception=StickyViolation(problem) if problem else None,
            context={"client": self.client_id, "sid": record.sid},
        )
        self._previous_failed = problem is not None
        self._retry = self._retry + 1 if self._previous_failed else 0
        return record

    def _report_exchange(self, exchange: Exchange) -> None:
        name = _TIMED.get(exchange.kind)
        if name is None:
            return
        if exchange.status is not None and not exchange.sticky_failure and not exchange.error:
            RUN.time(name, exchange.latency)
        error: Exception | None = None
        if exchange.sticky_failure:
            error = StickyViolation(f"wrong pod: {exchange.status} {exchange.error or ''}".strip())
        elif exchange.error:
            error = Exception(exchange.error)
        self.environment.events.request.fire(
            request_type="EIO" if exchange.kind is not ExchangeKind.ACK else "SIO",
            name=f"{name} ({self.mode.value})",
            response_time=exchange.latency * 1000,
            response_length=0,
            exception=error,
            context={"client": self.client_id, "pod": exchange.pod},
        )
