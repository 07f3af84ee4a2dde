"""Locust glue: the one module of the harness that imports locust (and so gevent).

Locustfiles in ``scenarios/`` subclass `StickyUser`: each user is one simulated client with its own source
address that runs Socket.IO sessions one after another. Every session record goes to the run directory for the
checks, and is reported to Locust as request events: the Engine.IO handshake, the WebSocket upgrade, POSTs and
acknowledged calls are timed, and a wrong-pod answer or a session that broke continuity is a Locust failure.

A process has one of three roles. A *lone* process (plain ``locust``) makes load and writes its records itself.
With Locust's distributed mode (``--processes N``, or ``--master`` and ``--worker --master-host``), *workers*
only make load: they send their session records, latencies and load samples to the *master* over Locust's own
messages every second (a worker on another machine needs no shared disk), and the master writes them to the run
directory, one file per worker. Only a lone process or the master owns a run (``--topology`` / ``--attach``:
harness.lifecycle.Run): it brings the cluster up, judges every client's sessions in one verdict, takes it down.

Every process samples its own CPU, event-loop lag, memory and live sessions each second (``load-<name>.json``):
the judgement says when the load generator, not the system, was the bottleneck (harness.load).

Options added to Locust's command line:
  --harness-run-dir DIR      where session records go (default: a new run directory under reports/)
  --client-addresses MODE    unique | shared-24 | single (see harness.net.addresses)
  --calls N                  acknowledged calls per session
  --session-length DURATION  how long each session stays connected (default 0: short sessions)
  --topology NAME            bring up this topology on the local backend for the run, judge it, take it down
  --attach NAME              use a cluster brought up by ``harness up --name NAME`` and judge against it
  --events TIMELINE          events during the swarm (with --topology or --attach), as for ``harness run``
  --seed N                   seed of the local backend's random choices (with --topology)
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, cast

import gevent
import psutil
from locust import User, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING

from harness import interrupts
from harness.client.records import Exchange, ExchangeKind, Mode, SessionRecord, write_session
from harness.client.session import Backoff, SimulatedClient
from harness.errors import HarnessError, UsageError
from harness.load import write_load
from harness.net.addresses import ClientAddressMode, client_address, worker_client_index
from harness.report.series import LatencySeries
from harness.stats import Histogram
from harness.topology import parse_duration

__all__ = ["StickyUser", "StickyViolation", "swarm_spec"]

log = logging.getLogger(__name__)

_TIMED = {
    ExchangeKind.HANDSHAKE: "handshake",
    ExchangeKind.UPGRADE: "upgrade",
    ExchangeKind.POST: "post",
    ExchangeKind.ACK: "ack",
}

# How long the master waits, after the swarm's end, for each worker's last records (beyond --stop-timeout).
COLLECT_GRACE = 20.0
SAMPLE_EVERY = 1.0  # seconds between load samples
LAG_PROBE = 0.05  # seconds the loop-lag probe sleeps between looks
IDLE_TICK = 5.0  # an idle session's look at its user's state: a backstop, `StickyUser.stop` wakes it


class StickyViolation(Exception):
    """A session that was not served by one pod from start to end."""


class _Run:
    """Process-wide state of a swarm: this process's role, where its records go, which client number comes next."""

    def __init__(self) -> None:
        self.role = "lone"  # lone | master | worker
        self.name = ""  # of this process's record files: sessions-<name>.jsonl, load-<name>.json, …
        self.run_dir: Path | None = None
        self.fh: Any = None
        self.lock = threading.Lock()
        self.counter = itertools.count()
        self.worker_index = 0
        self.sessions = 0
        self.violations = 0
        self.live = 0  # sessions connected now
        self.latency: dict[str, Histogram] = {}
        self.latency_series = LatencySeries()  # the same latencies per 5 s of wall clock, for the report
        self.wall = time.time  # when a latency was recorded: the report's series are by wall clock
        self.outbox: list[dict[str, Any]] = []  # worker: records not yet sent to the master
        self.samples: list[list[float]] = []  # [t, cpu %, loop lag ms, rss bytes, live sessions] per second
        self.owner: Any = None  # harness.lifecycle.Run when this process owns the run
        self.load_failure: str | None = None  # the load side failed (a worker's records never came)

    def open(self, run_dir: Path | None, role: str, name: str) -> None:
        self.role, self.name = role, name
        self.run_dir = run_dir
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            if role == "lone":
                self.fh = open(run_dir / f"sessions-{name}.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def client_index(self, environment: Environment) -> int:
        k = next(self.counter)
        if self.role != "worker":
            return k
        workers = int(getattr(environment.parsed_options, "expect_workers", 1) or 1)
        return worker_client_index(k, self.worker_index, workers)

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
            if self.role == "worker":
                self.outbox.append(record.to_json())
            elif self.fh is not None:
                write_session(self.fh, record)
                self.fh.flush()

    def take_outbox(self) -> list[dict[str, Any]]:
        with self.lock:
            out, self.outbox = self.outbox, []
            return out

    def status(self, users: int) -> dict[str, int]:
        return {"users": users, "live_sessions": self.live, "sessions": self.sessions, "violations": self.violations}

    def final(self) -> dict[str, Any]:
        """What a worker sends last: its latencies and load samples (records went in the batches before)."""
        return {
            "latency": {name: h.to_json() for name, h in self.latency.items()},
            "series": self.latency_series.to_json(),
            "samples": self.samples,
            "sessions": self.sessions,
        }

    def close(self) -> None:
        """Write this process's own files (not a worker's: its files are the master's to write)."""
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if self.run_dir is None or self.role == "worker":
            return
        if self.latency:
            _write_latency(self.run_dir, self.name, self.final())
        write_load(
            self.run_dir,
            self.name,
            role=self.role,
            samples=self.samples,
            sessions=0 if self.role == "master" else self.sessions,  # a master runs none: its workers' are theirs
            failure=self.load_failure,
        )


def _write_latency(run_dir: Path, name: str, final: dict[str, Any]) -> None:
    (run_dir / f"latency-{name}.json").write_text(json.dumps(final["latency"]), encoding="utf-8")
    (run_dir / f"series-latency-{name}.json").write_text(json.dumps(final["series"]), encoding="utf-8")


RUN = _Run()


class _Sampler:
    """Each second: this process's CPU, event-loop lag, memory and live sessions (``RUN.samples``); a lone
    process also writes its status for ``harness run``'s progress line, a worker sends its batch to the master."""

    def __init__(self) -> None:
        self.greenlets: list[Any] = []
        self.lag = 0.0  # the longest overshoot of the probe's sleep since the last sample, seconds
        self.process: Any = None

    def start(self, environment: Environment) -> None:
        if self.greenlets:
            return
        self.process = psutil.Process()  # this process's own: Locust's workers are forks of the master
        self.process.cpu_percent(None)  # the first call starts the measurement
        self.greenlets = [gevent.spawn(self._probe), gevent.spawn(self._loop, environment)]

    def _probe(self) -> None:
        while True:
            before = time.monotonic()
            gevent.sleep(LAG_PROBE)
            self.lag = max(self.lag, time.monotonic() - before - LAG_PROBE)

    def _loop(self, environment: Environment) -> None:
        while True:
            gevent.sleep(SAMPLE_EVERY)
            self.sample(environment)

    def sample(self, environment: Environment) -> None:
        lag, self.lag = self.lag, 0.0
        rss = self.process.memory_info().rss
        RUN.samples.append([round(time.time(), 3), self.process.cpu_percent(None), round(lag * 1000, 1), rss, RUN.live])
        runner = environment.runner
        users = runner.user_count if runner is not None else 0
        if RUN.role == "worker" and runner is not None:
            batch = {"records": RUN.take_outbox(), "status": RUN.status(users)}
            runner.send_message("harness_records", batch)
        elif RUN.run_dir is not None and RUN.role == "lone":
            _write_status(RUN.run_dir, RUN.name, RUN.status(users))

    def stop(self) -> None:
        for greenlet in self.greenlets:
            greenlet.kill(block=False)
        self.greenlets = []


SAMPLER = _Sampler()


def _write_status(run_dir: Path, name: str, status: dict[str, Any]) -> None:
    tmp = run_dir / f".status-{name}.json"
    tmp.write_text(json.dumps(status), encoding="utf-8")
    tmp.replace(run_dir / f"status-{name}.json")


class _Master:
    """The master's side of the records: one file per worker, written as the batches come."""

    def __init__(self) -> None:
        self.files: dict[str, Any] = {}
        self.done: dict[str, bool] = {}  # worker name -> its final report came
        self.names: dict[str, str] = {}  # Locust node id -> worker name

    def name(self, runner: MasterRunner, node_id: str) -> str:
        if node_id not in self.names:
            self.names[node_id] = f"w{runner.get_worker_index(node_id)}"
            self.done.setdefault(self.names[node_id], False)
        return self.names[node_id]

    def received(self, runner: MasterRunner, node_id: str, data: dict[str, Any]) -> None:
        if RUN.run_dir is None:
            return
        name = self.name(runner, node_id)
        fh = self.files.get(name)
        if fh is None:
            fh = self.files[name] = open(RUN.run_dir / f"sessions-{name}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        for record in data.get("records", []):
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            RUN.sessions += 1
            if SessionRecord.from_json(record).violation:
                RUN.violations += 1
        fh.flush()
        if "status" in data:
            _write_status(RUN.run_dir, name, data["status"])

    def finished(self, runner: MasterRunner, node_id: str, data: dict[str, Any]) -> None:
        self.received(runner, node_id, data)
        name = self.name(runner, node_id)
        if RUN.run_dir is not None:
            _write_latency(RUN.run_dir, name, data)
            write_load(RUN.run_dir, name, role="worker", samples=data["samples"], sessions=data["sessions"])
        self.done[name] = True

    def collect(self, environment: Environment) -> None:
        """At the swarm's end: ask every worker to stop and send what it has left, and wait for it."""
        runner = environment.runner
        if not isinstance(runner, MasterRunner):
            return
        for client in runner.clients.all:
            self.name(runner, client.id)
            runner.send_message("harness_stop", None, client_id=client.id)
        stop_timeout = float(environment.stop_timeout or 0)
        deadline = time.monotonic() + stop_timeout + COLLECT_GRACE
        while not all(self.done.values()) and time.monotonic() < deadline:
            gevent.sleep(0.2)
        missing = sorted(name for name, done in self.done.items() if not done)
        if missing and RUN.load_failure is None:
            RUN.load_failure = (
                f"load worker(s) {', '.join(missing)} sent no final records within "
                f"{stop_timeout + COLLECT_GRACE:g}s of the swarm's end: their sessions are not all in the verdict"
            )
        for fh in self.files.values():
            fh.close()
        self.files = {}


MASTER = _Master()


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
    group.add_argument("--events", default="", help='events during the swarm, e.g. "20s scale app 5" (as harness run)')
    group.add_argument("--seed", type=int, default=None, help="seed of the local backend (with --topology)")
    group.add_argument("--harness-reports-dir", default="", help="where runs and `harness up` clusters live")


def _role(environment: Environment) -> str:
    if isinstance(environment.runner, WorkerRunner):
        return "worker"
    if isinstance(environment.runner, MasterRunner):
        return "master"
    return "lone"


def swarm_spec(environment: Environment, options: Any) -> Any:
    """The harness.lifecycle.RunSpec of a Locust run that owns its cluster (``--topology`` or ``--attach``),
    from Locust's own options and the harness's: the same options as ``harness run`` give the same spec."""
    from harness.events import parse_events
    from harness.lifecycle import USER_CLASSES, RunSpec, SwarmOptions, attached_topology, new_seed
    from harness.runs import default_reports_dir
    from harness.topology import load_topology

    if options.topology and options.attach:
        raise UsageError("give --topology (bring one up) or --attach (use a running one), not both")
    reports = Path(options.harness_reports_dir).resolve() if options.harness_reports_dir else default_reports_dir()
    topology = load_topology(options.topology) if options.topology else attached_topology(options.attach, reports)
    named = [c.__name__ for c in environment.user_classes]
    chosen = list(getattr(options, "user_classes", None) or [])
    by_class = {cls: mode for mode, cls in USER_CLASSES.items()}
    # none named: the topology's kinds of client, as `harness run` takes them
    modes = tuple(by_class[c] for c in chosen if c in by_class) or tuple(
        m for m in topology.clients.modes if USER_CLASSES[m] in named
    )
    duration = float(options.run_time or 0)
    timeline = parse_events(options.events or None)
    if timeline and duration and timeline[-1].at >= duration:
        raise UsageError(f"--events: {timeline[-1].label} is not before the end of the swarm ({duration:g}s)")
    workers = int(options.expect_workers or 1) if getattr(options, "master", False) or options.processes else 1
    swarm = SwarmOptions(
        users=int(options.num_users or 1),
        spawn_rate=float(options.spawn_rate or 1),
        duration=duration,
        client_addresses=options.client_addresses,
        calls=options.calls,
        session_length=float(options.session_length or 0.0),
        modes=modes,
        whoami=not options.no_whoami,
        processes=workers,
    )
    return RunSpec(
        topology,
        swarm,
        new_seed(options.seed),
        reports,
        events=timeline,
        attach=options.attach or None,
        run_dir=Path(options.harness_run_dir).resolve() if options.harness_run_dir else None,
    )


def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:  # run_single_user or a library user: records go nowhere unless opened
        return
    role = _role(environment)
    if role == "worker":
        runner = cast(WorkerRunner, environment.runner)
        RUN.worker_index = runner.worker_index
        runner.register_message("harness_stop", _on_stop_request, concurrent=True)
        RUN.open(None, role, f"w{runner.worker_index}")
        return
    run_dir: Path | None = Path(options.harness_run_dir).resolve() if options.harness_run_dir else None
    if options.topology or options.attach:
        from harness.lifecycle import Run

        # Ctrl-C or SIGTERM: recorded, and acted on where the bring-up waits (`wait_until`) or by `_watch_owner`
        interrupts.install(raising=False)
        try:
            spec = swarm_spec(environment, options)
            RUN.owner = Run(spec, echo=lambda line: print(line, flush=True))
            RUN.owner.open()
        except HarnessError as exc:
            if RUN.owner is not None:
                RUN.owner.close()
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            if RUN.owner is not None:
                RUN.owner.stop_interrupted(exc)
            print(interrupts.interrupted_line(exc), file=sys.stderr, flush=True)
            sys.exit(interrupts.exit_code(exc))
        run_dir = RUN.owner.run_dir
        if not environment.host:
            environment.host = RUN.owner.entry_url
        kept = [
            c for c in environment.user_classes if getattr(c, "mode", None) in {Mode(m) for m in spec.options.modes}
        ]
        if kept:
            environment.user_classes[:] = kept
    elif not environment.host:
        print("error: give --host URL, --topology NAME or --attach NAME", file=sys.stderr, flush=True)
        sys.exit(2)
    elif run_dir is None:
        from harness.runs import default_reports_dir, new_run_id

        run_dir = default_reports_dir() / new_run_id("host")
    if role == "master":
        master = cast(MasterRunner, environment.runner)
        master.register_message(
            "harness_records", lambda environment, msg, **_: MASTER.received(master, msg.node_id, msg.data)
        )
        master.register_message(
            "harness_done", lambda environment, msg, **_: MASTER.finished(master, msg.node_id, msg.data)
        )
    RUN.open(run_dir, role, "master" if role == "master" else f"0-{os.getpid()}")
    if RUN.owner is not None:
        gevent.spawn(_watch_owner, environment)


def _watch_owner(environment: Environment) -> None:
    """A failure of the harness's own machinery ends the swarm early: the run will not be judged. So does a
    signal whose KeyboardInterrupt a greenlet swallowed (one that runs a client's background thread, whose
    bootstrap catches everything): the signal was recorded (`harness.interrupts`), and is acted on here."""
    while True:
        gevent.sleep(0.2)
        if interrupts.requested() is not None:
            if environment.runner is not None:
                environment.runner.quit()
            return
        failure = RUN.owner.failure() if RUN.owner is not None else None
        if failure is not None:
            print(f"stopping the swarm: {failure}", flush=True)
            if environment.runner is not None:
                environment.runner.quit()
            return


def _on_stop_request(environment: Environment, **_: Any) -> None:
    """Worker: the master asks for the end: stop the users (their sessions end cleanly), then send the rest."""
    runner = environment.runner
    if runner is None:
        return
    runner.stop()
    SAMPLER.stop()
    final = {"records": RUN.take_outbox(), **RUN.final()}
    runner.send_message("harness_done", final)


def _on_test_start(environment: Environment, **_: Any) -> None:
    SAMPLER.start(environment)
    if RUN.owner is not None and RUN.owner.swarm_started is None:
        # Locust has set its own SIGTERM handler since the bring-up: ours again, so that both signals reach
        # `_watch_owner`, which quits the runner, and `_on_quitting` sees them as an interrupt
        interrupts.install(again=True, raising=False)
        RUN.owner.start_events()


def _on_test_stopping(environment: Environment, **_: Any) -> None:
    if RUN.role == "master":
        MASTER.collect(environment)


def _on_quitting(environment: Environment, **_: Any) -> None:
    SAMPLER.stop()
    if RUN.role == "worker":
        return
    RUN.close()
    owner = RUN.owner
    if owner is None:
        return
    try:
        signum = interrupts.requested()
        if signum is not None:  # Ctrl-C or SIGTERM ended the swarm: what was measured so far, marked so
            raise interrupts.Interrupted(signum)
        judgement = owner.finish(RUN.load_failure)
        print(judgement.text, flush=True)
        print(f"summary: {owner.run_dir / 'summary.json'}", flush=True)
        print(f"report:  {owner.run_dir / 'report.html'}", flush=True)
        environment.process_exit_code = judgement.exit_code
    except KeyboardInterrupt as exc:
        with interrupts.stopping():
            _stop_users(environment)  # their sessions end before the cluster under them does
        owner.stop_interrupted(exc)
        print(interrupts.interrupted_line(exc), file=sys.stderr, flush=True)
        environment.process_exit_code = interrupts.exit_code(exc)
    finally:
        owner.close()


def _stop_users(environment: Environment) -> None:
    runner = environment.runner
    if runner is not None:
        try:
            runner.stop()
        except Exception as exc:  # the run's own clean-up must go on
            log.warning("stopping the users failed: %s", exc)


# Registered at import, as Locust expects of a locustfile's helpers.
events.init_command_line_parser.add_listener(_add_options)
events.init.add_listener(_on_init)
events.test_start.add_listener(_on_test_start)
events.test_stopping.add_listener(_on_test_stopping)
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
        index = RUN.client_index(environment)
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

    def stop(self, force: bool = False) -> bool:
        """Locust's stop; a graceful one also wakes the session idling in `run_session`, which ends at once."""
        killed = bool(super().stop(force))
        if not killed and self.client is not None:
            self.client.wake()
        return killed

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
        RUN.live += 1
        try:
            record = self.client.run_session(
                self.mode,
                calls=self.calls,
                length=self.session_length,
                should_stop=self._stopping,
                retry=self._retry,
                idle_tick=IDLE_TICK,
            )
        finally:
            RUN.live -= 1
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
