"""Orchestration behind the CLI: bring a topology up, swarm it with Locust, judge it, take it down.

Locust runs as a child process (it monkey-patches the standard library with gevent, which the asyncio pieces of
the harness must not share). While it runs, a progress line shows elapsed time, sessions and violations, read
from the session records as they are written.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.client.records import SessionRecord
from harness.cluster.base import Cluster
from harness.cluster.local.backend import LocalCluster
from harness.cluster.local.processes import find_run_processes, kill_group, spawn
from harness.errors import CommandError, UsageError
from harness.events import Event, EventRecord, EventRunner
from harness.runs import Judgement, cluster_link, judge, new_run_id
from harness.topology import Topology
from harness.watch import ProcessWatch

__all__ = ["SwarmOptions", "attach", "bring_up", "run_topology", "scenario_path", "swarm", "take_down"]

Echo = Callable[[str], None]

# The Locust user class of scenarios/sticky.py for each kind of client.
USER_CLASSES = {"polling": "PollingClient", "upgrade": "UpgradingClient", "websocket": "WebSocketClient"}


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


def swarm(
    entry_url: str,
    run_dir: Path,
    options: SwarmOptions,
    *,
    run_id: str,
    echo: Echo,
    events: EventRunner | None = None,
    replicas: Callable[[], str] | None = None,
    failure: Callable[[], str | None] | None = None,
) -> str | None:
    """Run Locust headless against ``entry_url`` until ``options.duration`` is over; records go to run_dir.
    A timeline of events, if given, starts with the swarm. ``failure()`` names a failure of the harness's own
    machinery once there is one: the swarm then stops early (the run will not be judged). Returns what went
    wrong with the load generator itself (it exited on its own), or None."""
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
    if not options.whoami:
        argv.append("--no-whoami")
    argv += [USER_CLASSES[mode] for mode in options.modes]
    process = spawn("locust", argv, run_id=run_id, log_path=run_dir / "locust.log")
    if events is not None:
        events.start()
    progress = _Progress(run_dir)
    started = time.monotonic()
    deadline = started + options.duration + 60
    next_line = started + options.progress_every
    try:
        while process.popen is not None and process.popen.poll() is None:
            time.sleep(0.2)
            if failure is not None and failure() is not None:
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
                if replicas is not None:
                    line += f", {replicas()}"
                upcoming = events.next_event() if events is not None else None
                if upcoming is not None:
                    line += f", next event: {upcoming.label}"
                echo(line)
            if now > deadline:
                raise CommandError(argv, -1, process.log_tail(30), "the swarm did not stop on time: locust")
    finally:
        process.stop(grace=10.0)
        if events is not None:
            events.stop()
    code = process.popen.returncode if process.popen is not None else None
    if code in (0, None) or (failure is not None and failure() is not None):
        return None
    last = [line for line in process.log_tail(30).splitlines() if line.strip()][-1:] or ["(no output)"]
    echo(f"the load generator exited on its own; its log ends:\n{process.log_tail(15)}")
    signal_text = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    return f"the load generator (locust) exited during the run ({signal_text}): {last[0].strip()}"


def _event_line(record: EventRecord) -> str:
    if record.error is not None:
        return f"event {record.label} did not take effect: {record.error}"
    return f"event {record.label} done: {record.observed}"


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
    """``harness run``: up, swarm (with a timeline of events, if any), judge, report, down.

    The run is judged while the cluster is still up, so that a verdict that differs from the expected one comes
    with the cluster's evidence (pod logs, events, each node's proxy rules on kind). ``case`` names what the run
    is for (an e2e test), so that ``harness compare`` pairs it with the same case of another night."""
    run_id = new_run_id(topology.name)
    run_dir = reports_dir / run_id
    backend = backend or BackendOptions()
    # made (not started) first: a topology the backend cannot run is refused before anything is announced
    cluster = make_cluster(topology, backend, run_id=run_id, run_dir=run_dir, seed=seed, echo=echo)
    echo(f"run {run_id}: topology {topology.name} on the {backend.name} backend, seed {seed}")
    started = time.time()
    with cluster:
        echo(
            f"up: {len(cluster.pods('app'))} app pods, {len(cluster.pods('tier'))} tier pods, "
            f"{topology.nodes} nodes; entry {cluster.entry_url}; swarming {options.users} clients for "
            f"{options.duration:g}s"
        )
        timeline = EventRunner(cluster, events, run_dir, on_event=lambda r: echo(_event_line(r))) if events else None

        def replicas() -> str:
            return f"app pods {len(cluster.pods('app'))}" + (
                f", tier pods {len(cluster.pods('tier'))}" if topology.tier else ""
            )

        def failure() -> str | None:
            return watch.failure or (timeline.failure if timeline is not None else None)

        with ProcessWatch(cluster, run_dir, on_exit=lambda r: echo(f"UNPLANNED: {r.label}")) as watch:
            load_failure = swarm(
                cluster.entry_url,
                run_dir,
                options,
                run_id=run_id,
                echo=echo,
                events=timeline,
                replicas=replicas,
                failure=failure,
            )
        pods = [p.name for p in cluster.pods("app")]
        removed = list(getattr(cluster, "removed_pods", []))
        network = cluster.status().get("network")
        if network:
            (run_dir / "network.json").write_text(json.dumps(network, indent=2), encoding="utf-8")
        meta = {
            "seed": seed,
            "users": options.users,
            "duration_s": options.duration,
            "client_addresses": options.client_addresses,
            "session_length_s": options.session_length,
            "kube_proxy_mode": backend.proxy_mode if backend.name == "kind" else None,
            "case": case,
            "started": started,
            "ended": time.time(),
            "report_dir": str(run_dir),
        }
        judgement = judge(
            run_dir,
            topology,
            backend=backend.name,
            pods=pods,
            removed_pods=removed,
            meta=meta,
            reports_dir=reports_dir,
            client_addresses=options.client_addresses,
            harness_failure=failure() or load_failure,
        )
        collect = getattr(cluster, "collect_evidence", None)
        if judgement.exit_code != 0 and collect is not None:
            try:
                where = collect(f"verdict {judgement.summary['verdict']}")
            except Exception as exc:  # evidence is best effort: the verdict matters more
                echo(f"collecting evidence failed: {exc}")
            else:
                judgement.text += f"\nevidence: {where}"
    return judgement


def bring_up(topology: Topology, *, name: str, reports_dir: Path, seed: int, base_port: int | None) -> LocalCluster:
    """``harness up``: a detached cluster that outlives this process, found again by name."""
    link = cluster_link(reports_dir, name)
    if (link / "cluster.json").is_file():
        raise UsageError(
            f"a cluster named {name!r} is already up ({link.resolve()}): "
            f"`harness down --name {name}` first, or choose another --name"
        )
    run_id = new_run_id(topology.name)
    run_dir = reports_dir / run_id
    cluster = LocalCluster(topology, run_id=run_id, run_dir=run_dir, seed=seed, base_port=base_port, attached=False)
    with _cleanup_on_error(cluster):
        cluster.up()
    link.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(run_dir.resolve())
    return cluster


@contextlib.contextmanager
def _cleanup_on_error(cluster: LocalCluster) -> Iterator[None]:
    try:
        yield
    except BaseException:
        cluster.down()
        raise


def attach(name: str, *, reports_dir: Path) -> LocalCluster:
    state = cluster_link(reports_dir, name) / "cluster.json"
    if not state.is_file():
        raise UsageError(f"no cluster named {name!r} is up (no {state}); start one with `harness up --name {name}`")
    return LocalCluster.attach(state)


def take_down(name: str, *, reports_dir: Path, all_runs: bool = False) -> list[str]:
    lines = []
    link = cluster_link(reports_dir, name)
    if (link / "cluster.json").is_file():
        cluster = LocalCluster.attach(link / "cluster.json")
        cluster.down()
        lines.append(f"cluster {name} (run {cluster.run_id}) is down")
    elif not all_runs:
        raise UsageError(f"no cluster named {name!r} is up; `harness down --all` stops anything any run left")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    if all_runs:
        leftovers = find_run_processes()
        for pid in leftovers:
            kill_group(pid, grace=2.0)
        lines.append(f"stopped {len(leftovers)} leftover process(es) of earlier runs")
    return lines


def hold_up(topology: Topology, backend: BackendOptions, *, reports_dir: Path, seed: int, echo: Echo = print) -> None:
    """``harness up`` on a cluster backend: up, then hold it (and the balancer this process runs) until Ctrl-C."""
    run_id = new_run_id(topology.name)
    cluster = make_cluster(topology, backend, run_id=run_id, run_dir=reports_dir / run_id, seed=seed, echo=echo)
    with cluster:
        echo(f"cluster up on the {backend.name} backend: topology {topology.name}, run {run_id}")
        echo(f"entry: {cluster.entry_url}")
        echo(f"swarm it from another terminal:  locust -f scenarios/sticky.py --host {cluster.entry_url}")
        echo("Ctrl-C takes it down" + (" (the cluster itself is kept)" if backend.keep_cluster else ""))
        while True:
            time.sleep(3600)
