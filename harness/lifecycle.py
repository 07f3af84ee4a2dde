"""The run lifecycle, in one place: bring up or attach → swarm → watch → judge → report → take down.

Every entry uses it: ``harness run`` (`run_topology`), the Locust entry (``locust -f scenarios/sticky.py
--topology NAME`` or ``--attach NAME``, through `Run` from harness.swarm) and the e2e fixtures. The same
`RunSpec` gives the same verdict whichever entry made it: what the judging depends on is `RunSpec.judged_by`.

Only the process that owns a run (``harness run`` itself, a lone Locust process or the Locust master) opens a
`Run`; Locust workers only make load and send their records to the master (harness.swarm).

Locust runs as a child process of ``harness run`` (it monkey-patches the standard library with gevent, which the
asyncio pieces of the harness must not share). While it runs, a progress line shows elapsed time, sessions and
violations, read from the session records as they are written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import interrupts
from harness.client.records import SessionRecord
from harness.cluster.base import Cluster
from harness.cluster.local.backend import NETD_DESCRIPTORS, LocalCluster
from harness.cluster.local.processes import find_orphans, raise_open_files_limit, spawn, stop_spawned
from harness.errors import CommandError, UsageError
from harness.events import Event, EventRecord, EventRunner
from harness.runs import Judgement, cluster_link, judge, mark_interrupted, new_run_id
from harness.topology import Topology, load_topology
from harness.watch import ProcessWatch

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PROCESSES",
    "USER_CLASSES",
    "BackendOptions",
    "Run",
    "RunSpec",
    "SwarmOptions",
    "attached_state",
    "attached_topology",
    "execute",
    "locust_argv",
    "make_cluster",
    "new_seed",
    "run_topology",
    "scenario_path",
    "swarm",
]

Echo = Callable[[str], None]

# The Locust user class of scenarios/sticky.py for each kind of client.
USER_CLASSES = {"polling": "PollingClient", "upgrade": "UpgradingClient", "websocket": "WebSocketClient"}

# Load processes of `harness run`: one. A second one only pays when the first is saturated (the load section of
# summary.json says when): on this 2-core machine the cluster under test needs the other core.
DEFAULT_PROCESSES = 1


@dataclass(frozen=True)
class BackendOptions:
    """Which backend a run uses and how: local (processes on loopback), kind (a kind cluster on this machine),
    kubeconfig (an existing cluster behind the user's own load balancer)."""

    name: str = "local"
    base_port: int | None = None  # local
    app_cmd: list[str] | None = None  # local
    keep_cluster: bool = False  # kind, kubeconfig
    proxy_mode: str = "iptables"  # kind: kube-proxy mode (iptables, nftables, ipvs)
    kind_config: Path | None = None  # kind: a kind config file (overrides proxy_mode)
    cluster_name: str = "sticky-harness"  # kind
    context: str | None = None  # kubeconfig
    entry_url: str | None = None  # kubeconfig
    image: str | None = None  # kubeconfig: the app image, pushed where the cluster can pull it
    dry_run: bool = False  # kind, kubeconfig: print the plan, run nothing


def make_cluster(
    topology: Topology, backend: BackendOptions, *, run_id: str, run_dir: Path, seed: int, echo: Echo = print
) -> Cluster:
    """The cluster of a run on the chosen backend (not yet up)."""
    if backend.name == "local":
        if backend.dry_run:
            raise UsageError("--dry-run is for the kind and kubeconfig backends: the local backend runs here")
        return LocalCluster(
            topology, run_id=run_id, run_dir=run_dir, seed=seed, base_port=backend.base_port, app_cmd=backend.app_cmd
        )
    if backend.app_cmd:
        raise UsageError("--app-cmd is for the local backend; on a cluster, give your app's image")
    from harness.cluster.kind import KindCluster, KubeconfigCluster, kind_config_path

    if backend.name == "kind":
        return KindCluster(
            topology,
            run_id=run_id,
            run_dir=run_dir,
            seed=seed,
            cluster_name=backend.cluster_name,
            kind_config=backend.kind_config or kind_config_path(backend.proxy_mode),
            keep=backend.keep_cluster,
            dry_run=backend.dry_run,
            echo=echo,
        )
    if backend.name == "kubeconfig":
        if not backend.context or not backend.entry_url:
            raise UsageError("--backend kubeconfig needs --context NAME and --entry-url URL (your load balancer)")
        extra = {"image": backend.image} if backend.image else {}
        return KubeconfigCluster(
            topology,
            run_id=run_id,
            run_dir=run_dir,
            context=backend.context,
            entry_url=backend.entry_url,
            seed=seed,
            keep=backend.keep_cluster,
            dry_run=backend.dry_run,
            echo=echo,
            **extra,  # type: ignore[arg-type]
        )
    raise UsageError(f"unknown backend {backend.name!r}: local, kind or kubeconfig")


@dataclass(frozen=True)
class SwarmOptions:
    users: int = 30
    spawn_rate: float = 10.0
    duration: float = 60.0
    client_addresses: str = "unique"
    calls: int = 3
    session_length: float = 0.0  # seconds each session stays connected (0: short sessions)
    progress_every: float = 5.0
    modes: tuple[str, ...] = ("polling", "upgrade", "websocket")  # kinds of client (see USER_CLASSES)
    whoami: bool = True  # the app answers `whoami` (the reference app does; a user's own app may not)
    processes: int = DEFAULT_PROCESSES  # Locust processes making load (more than one: a master and workers)


@dataclass
class RunSpec:
    """Everything a run is made of, whichever entry made it."""

    topology: Topology
    options: SwarmOptions
    seed: int
    reports_dir: Path
    backend: BackendOptions = field(default_factory=BackendOptions)
    events: list[Event] = field(default_factory=list)
    case: str | None = None  # what the run is for (an e2e test), for `harness compare`
    attach: str | None = None  # swarm the cluster of `harness up --name NAME` instead of bringing one up
    run_dir: Path | None = None  # where the run's records go (default: reports_dir/<run id>)

    def judged_by(self) -> dict[str, Any]:
        """What the verdict depends on: two specs equal here are judged alike."""
        return {
            "topology": self.topology.name,
            "backend": self.backend.name,
            "kube_proxy_mode": self.backend.proxy_mode if self.backend.name == "kind" else None,
            "client_addresses": self.options.client_addresses,
            "session_length_s": self.options.session_length,
            "modes": tuple(self.options.modes),
            "whoami": self.options.whoami,
            "calls": self.options.calls,
            "events": [e.label for e in self.events],
        }


def _event_line(record: EventRecord) -> str:
    if record.error is not None:
        return f"event {record.label} did not take effect: {record.error}"
    if record.action == "fault" and "; cleared after" in (record.observed or ""):
        return f"event {record.label} over: {(record.observed or '').split('; ', 1)[1]}"
    return f"event {record.label} done: {record.observed}"


class Run:
    """One run from the owner's side: its cluster (brought up, or attached to), the watch over its processes,
    its timeline of events, and at the end its judgement. ``open()`` before the swarm, ``finish()`` after it,
    ``close()`` always (it is idempotent; as a context manager, ``with Run(spec) as run``)."""

    def __init__(self, spec: RunSpec, *, echo: Echo = print) -> None:
        self.spec = spec
        self.echo = echo
        self.cluster: Cluster
        if spec.attach:
            state = attached_state(spec.attach, spec.reports_dir)
            self.cluster = LocalCluster.attach(state)
            self.owned = False
            self.run_dir = spec.run_dir or state.parent.resolve() / f"swarm-{time.strftime('%H%M%S')}"
            self.run_id = self.cluster.run_id
        else:
            self.run_id = new_run_id(spec.topology.name)
            self.run_dir = spec.run_dir or spec.reports_dir / self.run_id
            # made (not started) first: a topology the backend cannot run is refused before anything is announced
            self.cluster = make_cluster(
                spec.topology, spec.backend, run_id=self.run_id, run_dir=self.run_dir, seed=spec.seed, echo=echo
            )
            self.owned = True
        self.watch: ProcessWatch | None = None
        self.timeline: EventRunner | None = None
        self.started = 0.0
        self.swarm_started: float | None = None
        self._up = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def open(self) -> Run:
        """Bring the cluster up (or look at the attached one) and start watching its processes."""
        spec = self.spec
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        if self.owned:
            self.echo(
                f"run {self.run_id}: topology {spec.topology.name} on the {spec.backend.name} backend, seed {spec.seed}"
            )
            self._warn_orphans()
            self.cluster.__enter__()
            self._up = True
            self.watch = ProcessWatch(
                self.cluster, self.run_dir, on_exit=lambda r: self.echo(f"UNPLANNED: {r.label}")
            ).start()
        else:
            self.echo(f"swarming cluster {spec.attach} (run {self.run_id}); records in {self.run_dir}")
        if self.owned and spec.backend.name == "local":
            self._warn_descriptors()
        if spec.events:
            self.timeline = EventRunner(
                self.cluster, list(spec.events), self.run_dir, on_event=lambda r: self.echo(_event_line(r))
            )
        self.echo(
            f"up: {len(self.cluster.pods('app'))} app pods, {len(self.cluster.pods('tier'))} tier pods, "
            f"{spec.topology.nodes} nodes; entry {self.cluster.entry_url}; swarming {spec.options.users} clients "
            f"for {spec.options.duration:g}s"
            + (f" from {spec.options.processes} load processes" if spec.options.processes > 1 else "")
        )
        return self

    def _warn_orphans(self) -> None:
        orphans = find_orphans()
        if orphans:
            runs = ", ".join(sorted(set(orphans.values())))
            self.echo(
                f"warning: {len(orphans)} processes of earlier runs whose harness is gone are still running "
                f"(run {runs}): `harness down --all` stops them"
            )

    def _warn_descriptors(self) -> None:
        options = self.spec.options
        need = options.users * max(NETD_DESCRIPTORS[m] for m in options.modes)
        limit = raise_open_files_limit()
        if need > limit:
            self.echo(
                f"warning: {options.users} clients may hold up to {need} file descriptors in each process of the "
                f"network daemon and their limit is {limit} (raise the hard limit, `ulimit -Hn`, as root): if one "
                "runs out, the run stops, not judged"
            )

    def __enter__(self) -> Run:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def entry_url(self) -> str:
        return self.cluster.entry_url

    def start_events(self) -> None:
        """The swarm has started: so does the timeline (event times count from now)."""
        self.swarm_started = time.time()
        if self.timeline is not None:
            self.timeline.start()

    def failure(self) -> str | None:
        """The harness's own machinery failed (a process of its own exited, an event did not take effect)."""
        if self.watch is not None and self.watch.failure:
            return self.watch.failure
        return self.timeline.failure if self.timeline is not None else None

    def next_event(self) -> Event | None:
        return self.timeline.next_event() if self.timeline is not None else None

    def replicas(self) -> str:
        text = f"app pods {len(self.cluster.pods('app'))}"
        return text + (f", tier pods {len(self.cluster.pods('tier'))}" if self.spec.topology.tier else "")

    def meta(self) -> dict[str, Any]:
        spec, options = self.spec, self.spec.options
        return {
            "seed": spec.seed,
            "users": options.users,
            "duration_s": options.duration,
            "client_addresses": options.client_addresses,
            "session_length_s": options.session_length,
            "kube_proxy_mode": spec.backend.proxy_mode if spec.backend.name == "kind" else None,
            "case": spec.case,
            "started": self.started,
            "swarm_started": self.swarm_started,
            "ended": time.time(),
            "report_dir": str(self.run_dir),
        }

    def finish(self, load_failure: str | None = None, *, interrupted: int | None = None) -> Judgement:
        """Stop the timeline and the watch, judge the run (the cluster still up, so that a verdict that differs
        from the expected one comes with the cluster's evidence) and write its summary and report. With
        ``interrupted`` (the signal that stopped the run), what was measured so far, marked interrupted."""
        if self.timeline is not None:
            self.timeline.stop()
        if self.watch is not None:
            self.watch.stop()
        if interrupted is None:
            self.echo("swarm over: judging the run and writing its report")
        cluster = self.cluster
        self.run_dir.mkdir(parents=True, exist_ok=True)
        reachable = self._up or not self.owned  # an interrupt may have come before the cluster was up
        network = None
        if reachable:
            try:
                network = cluster.status().get("network")
            except Exception as exc:  # the cluster was cut short mid-bring-up: the summary matters more
                if interrupted is None:
                    raise
                log.debug("no network status for an interrupted run: %s", exc)
        if network:
            (self.run_dir / "network.json").write_text(json.dumps(network, indent=2), encoding="utf-8")
        mismatch = None
        if reachable:
            try:
                mismatch = cluster.proxy_mismatch()
            except Exception as exc:  # the question is the harness's; the verdict stands without the answer
                log.warning("asking the tier about its PROXY header failed: %s", exc)
        judgement = judge(
            self.run_dir,
            self.spec.topology,
            backend=self.spec.backend.name,
            pods=[p.name for p in cluster.pods("app")] if reachable else [],
            removed_pods=list(getattr(cluster, "removed_pods", [])),
            meta=self.meta(),
            reports_dir=self.spec.reports_dir,
            client_addresses=self.spec.options.client_addresses,
            harness_failure=self.failure() or load_failure,
            interrupted=interrupted,
            proxy_mismatch=mismatch,
        )
        collect = getattr(cluster, "collect_evidence", None)
        if judgement.exit_code != 0 and collect is not None and interrupted is None:
            try:
                where = collect(f"verdict {judgement.summary['verdict']}")
            except Exception as exc:  # evidence is best effort: the verdict matters more
                self.echo(f"collecting evidence failed: {exc}")
            else:
                judgement.text += f"\nevidence: {where}"
        return judgement

    def stop_interrupted(self, exc: BaseException) -> None:
        """After Ctrl-C or SIGTERM: write what was measured so far, marked interrupted, and stop everything this
        run started. Further signals meanwhile are noted, not obeyed (`harness.interrupts.stopping`). The
        summary's path goes on the exception, for the one line the command prints."""
        with interrupts.stopping():
            try:
                judgement = self.finish(interrupted=interrupts.signal_of(exc))
            except Exception as failure:  # the clean-up below matters more than the summary
                log.warning("the interrupted run's summary could not be written: %s", failure)
            else:
                self._tell(exc, judgement.summary)
            finally:
                self.close()

    def _tell(self, exc: BaseException, summary: dict[str, Any]) -> None:
        """Put the interrupted run's summary on the exception, for the one line the command prints."""
        exc.summary_path = self.run_dir / "summary.json"  # type: ignore[attr-defined]
        exc.sessions = summary["sessions"]  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop what this run started; take the cluster down if this run brought it up. A signal meanwhile is
        obeyed once the clean-up is done."""
        if self._closed:
            return
        self._closed = True
        with interrupts.stopping():
            try:
                if self.timeline is not None:
                    self.timeline.stop()
                if self.watch is not None:
                    self.watch.stop()
            finally:
                try:
                    if self._up:
                        self._up = False
                        self.cluster.__exit__(None, None, None)
                finally:
                    strays = stop_spawned(self.run_id)
                    if strays:
                        log.warning("stopped processes the clean-up had missed: %s", ", ".join(strays))


def scenario_path() -> Path:
    return Path(__file__).resolve().parent.parent / "scenarios" / "sticky.py"


class _Progress:
    """Counts sessions and violations in the record files as they grow."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.offsets: dict[Path, int] = {}
        self.sessions = 0
        self.violations = 0

    def live(self) -> dict[str, int]:
        """Users and live sessions summed over the load-generator processes' status files."""
        totals: dict[str, int] = {}
        for path in self.run_dir.glob("status-*.json"):
            with contextlib.suppress(OSError, ValueError):
                for key, value in json.loads(path.read_text(encoding="utf-8")).items():
                    totals[key] = totals.get(key, 0) + int(value)
        return totals

    def poll(self) -> None:
        for path in self.run_dir.glob("sessions-*.jsonl"):
            with open(path, "rb") as fh:
                fh.seek(self.offsets.get(path, 0))
                data = fh.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            for line in complete.splitlines():
                self.sessions += 1
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    if SessionRecord.from_json(json.loads(line)).violation:
                        self.violations += 1


def locust_argv(entry_url: str, run_dir: Path, options: SwarmOptions) -> list[str]:
    """The Locust command line of a swarm of ``harness run``: lone, or a master with ``--processes N`` workers."""
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(scenario_path()),
        "--headless",
        "-u",
        str(options.users),
        "-r",
        f"{options.spawn_rate:g}",
        "-t",
        f"{options.duration:g}s",
        "--host",
        entry_url,
        "--stop-timeout",
        "10",
        "--exit-code-on-error",
        "0",
        "--csv",
        str(run_dir / "locust"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--harness-run-dir",
        str(run_dir),
        "--client-addresses",
        options.client_addresses,
        "--calls",
        str(options.calls),
        "--session-length",
        f"{options.session_length:g}s",
    ]
    if options.processes > 1:
        argv += ["--processes", str(options.processes), "--master-bind-host", "127.0.0.1"]
    if not options.whoami:
        argv.append("--no-whoami")
    return argv + [USER_CLASSES[mode] for mode in options.modes]


def swarm(
    entry_url: str, run_dir: Path, options: SwarmOptions, *, run_id: str, echo: Echo, run: Run | None = None
) -> str | None:
    """Run Locust headless against ``entry_url`` until ``options.duration`` is over; records go to run_dir.
    With a `Run`, its timeline starts with the swarm, the progress line shows its replicas and next event, and
    a failure of the harness's own machinery stops the swarm early (the run will not be judged). Returns what
    went wrong with the load generator itself (it exited on its own), or None."""
    argv = locust_argv(entry_url, run_dir, options)
    process = spawn("locust", argv, run_id=run_id, log_path=run_dir / "locust.log")
    if run is not None:
        run.start_events()
    progress = _Progress(run_dir)
    started = time.monotonic()
    deadline = started + options.duration + 90
    next_line = started + options.progress_every
    failure = run.failure if run is not None else (lambda: None)
    try:
        while process.popen is not None and process.popen.poll() is None:
            time.sleep(0.2)
            interrupts.check()
            if failure() is not None:
                echo(f"stopping the swarm: {failure()}")
                break
            now = time.monotonic()
            if now >= next_line:
                next_line = now + options.progress_every
                progress.poll()
                live = progress.live()
                line = (
                    f"[{now - started:5.0f}s/{options.duration:g}s] users {live.get('users', 0)}, "
                    f"live sessions {live.get('live_sessions', 0)}, sessions {progress.sessions}, "
                    f"violations {progress.violations}"
                )
                if run is not None:
                    line += f", {run.replicas()}"
                    upcoming = run.next_event()
                    if upcoming is not None:
                        line += f", next event: {upcoming.label}"
                echo(line)
            if now > deadline:
                raise CommandError(argv, -1, process.log_tail(30), "the swarm did not stop on time: locust")
    finally:
        with interrupts.stopping():
            process.stop(grace=30.0)
            if run is not None and run.timeline is not None:
                run.timeline.stop()
    code = process.popen.returncode if process.popen is not None else None
    if code in (0, None) or failure() is not None:
        return None
    last = [line for line in process.log_tail(30).splitlines() if line.strip()][-1:] or ["(no output)"]
    echo(f"the load generator exited on its own; its log ends:\n{process.log_tail(15)}")
    signal_text = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    return f"the load generator (locust) exited during the run ({signal_text}): {last[0].strip()}"


def run_topology(
    topology: Topology,
    options: SwarmOptions,
    *,
    seed: int,
    reports_dir: Path,
    backend: BackendOptions | None = None,
    echo: Echo = print,
    events: list[Event] | None = None,
    case: str | None = None,
) -> Judgement:
    """``harness run``: up, swarm (with a timeline of events, if any), judge, report, down."""
    spec = RunSpec(
        topology, options, seed, reports_dir, backend=backend or BackendOptions(), events=list(events or []), case=case
    )
    return execute(spec, echo=echo)


def execute(spec: RunSpec, *, echo: Echo = print) -> Judgement:
    """A whole run of ``spec`` with Locust as a child process: open, swarm, judge, close. Interrupted (Ctrl-C,
    SIGTERM) at any moment, it writes what was measured so far, marked interrupted (a run already judged keeps
    its figures), stops everything and raises the `KeyboardInterrupt` on."""
    run = Run(spec, echo=echo)
    judgement: Judgement | None = None
    try:
        run.open()
        load_failure = swarm(run.entry_url, run.run_dir, spec.options, run_id=run.run_id, echo=echo, run=run)
        judgement = run.finish(load_failure)
        run.close()  # a signal during the clean-up is raised when it is done
        return judgement
    except KeyboardInterrupt as exc:
        if judgement is None:
            run.stop_interrupted(exc)
        else:
            with interrupts.stopping():
                run.close()
                run._tell(exc, mark_interrupted(run.run_dir, interrupts.signal_of(exc)))
        raise
    finally:
        run.close()


def attached_state(name: str, reports_dir: Path) -> Path:
    """The state file of the cluster of ``harness up --name NAME``; a UsageError naming the fix if none is up."""
    state = cluster_link(reports_dir, name) / "cluster.json"
    if not state.is_file():
        raise UsageError(f"no cluster named {name!r} is up (no {state}); start one with `harness up --name {name}`")
    return state


def attached_topology(name: str, reports_dir: Path) -> Topology:
    """The topology of the cluster of ``harness up --name NAME``."""
    state = attached_state(name, reports_dir)
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"the state file of cluster {name!r} cannot be read ({state}: {exc})") from None
    return load_topology(data["topology"])


def new_seed(seed: int | None) -> int:
    return seed if seed is not None else secrets.randbelow(2**31)
