"""The ``harness`` command: a thin shell over the library.

Exit codes: 0 when the measured verdict equals the topology's expected verdict (or the command did what it was
asked), 1 when the verdict differs, 2 on a usage or set-up error (the message says what to do), 130 on Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from harness import interrupts
from harness.errors import HarnessError, UsageError
from harness.topology import available_topologies, load_topology, parse_duration

__all__ = ["main"]

log = logging.getLogger("harness")


def _duration(_ctx: Any, _param: Any, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _reports_dir(value: str | None) -> Path:
    from harness.runs import default_reports_dir

    return Path(value).resolve() if value else default_reports_dir()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """End-to-end test and load harness for sticky sessions of Socket.IO / Engine.IO apps."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


_topology_option = click.option(
    "--topology",
    "topology_name",
    default="nginx-hash",
    show_default=True,
    help="A built-in topology name (see `harness topologies`) or a path to a topology YAML file.",
)
_BACKEND_OPTIONS = [
    click.option(
        "--backend",
        type=click.Choice(["local", "kind", "kubeconfig"]),
        default="local",
        show_default=True,
        help="local: real processes on loopback addresses; kind: a kind cluster (needs Docker and kind); "
        "kubeconfig: an existing cluster behind your own load balancer.",
    ),
    click.option("--base-port", type=int, default=None, help="local: first of 5 ports (default: random)."),
    click.option("--keep-cluster", is_flag=True, help="kind/kubeconfig: do not delete what the run created."),
    click.option(
        "--kube-proxy-mode",
        type=click.Choice(["iptables", "nftables", "ipvs"]),
        default="iptables",
        show_default=True,
        help="kind: the kube-proxy mode of the cluster (clusters/kind/*.yaml).",
    ),
    click.option(
        "--cluster-name", default="sticky-harness", show_default=True, help="kind: cluster to create or reuse."
    ),
    click.option("--context", default=None, help="kubeconfig: the context of your cluster."),
    click.option("--entry-url", default=None, help="kubeconfig: your load balancer's URL (the clients' entry)."),
    click.option("--image", default=None, help="kubeconfig: the app image, pushed where the cluster pulls from."),
    click.option("--dry-run", is_flag=True, help="kind/kubeconfig: print every command and API call, run nothing."),
]


def _backend_options(func: Any) -> Any:
    for option in reversed(_BACKEND_OPTIONS):
        func = option(func)
    return func


def _backend(kwargs: dict[str, Any], app_cmd: list[str] | None = None) -> Any:
    from harness.lifecycle import BackendOptions

    return BackendOptions(
        name=kwargs.pop("backend"),
        base_port=kwargs.pop("base_port"),
        app_cmd=app_cmd,
        keep_cluster=kwargs.pop("keep_cluster"),
        proxy_mode=kwargs.pop("kube_proxy_mode"),
        cluster_name=kwargs.pop("cluster_name"),
        context=kwargs.pop("context"),
        entry_url=kwargs.pop("entry_url"),
        image=kwargs.pop("image"),
        dry_run=kwargs.pop("dry_run"),
    )


def _print_plan(topology: Any, backend: Any) -> None:
    from harness.cluster.kind import dry_run_plan, format_plan

    steps = dry_run_plan(
        topology, cluster_name=backend.cluster_name, keep=backend.keep_cluster, proxy_mode=backend.proxy_mode
    )
    click.echo(f"# what `--backend {backend.name}` would do for topology {topology.name} (nothing was run)")
    click.echo(format_plan(steps))


_seed_option = click.option("--seed", type=int, default=None, help="Seed of the backend's random choices (replay).")
_reports_option = click.option("--reports-dir", default=None, help="Where runs are written (default: ./reports).")


@cli.command()
@_topology_option
@_backend_options
@click.option("--users", type=click.IntRange(1, 200_000), default=60, show_default=True, help="Simulated clients.")
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Locust processes making load: more than one runs Locust's distributed mode (a master and this many "
    "workers on loopback). One is the default: on a small machine the cluster under test needs the other cores; "
    "the summary's load section says when one process was saturated.",
)
@click.option("--spawn-rate", type=click.FloatRange(0.1, 1000), default=10.0, show_default=True)
@click.option("--duration", default="60s", show_default=True, callback=_duration, help="How long to swarm.")
@click.option(
    "--client-addresses",
    type=click.Choice(["unique", "shared-24", "single"]),
    default="unique",
    show_default=True,
    help="Source addresses of the clients.",
)
@click.option(
    "--calls",
    type=click.IntRange(0, 1000),
    default=3,
    show_default=True,
    help="Acknowledged calls per session.",
)
@click.option(
    "--session-length",
    default="0s",
    show_default=True,
    callback=_duration,
    help="How long each session stays connected (long-polling or idle on WebSocket), its calls spread over it; "
    "0: connect, call, disconnect.",
)
@click.option(
    "--clients",
    default=None,
    help="Kinds of client, comma-separated: polling, upgrade, websocket (default: the topology's).",
)
@click.option(
    "--events",
    default=None,
    help='A timeline during the swarm, e.g. "20s scale app 5; 40s kill app; 50s restart app; 30s lb-out node-1".',
)
@click.option(
    "--app-cmd",
    default=None,
    help="Run this command as each app pod instead of the reference app (HOST, PORT, POD_NAME in its environment).",
)
@_seed_option
@_reports_option
def run(
    topology_name: str,
    users: int,
    processes: int,
    spawn_rate: float,
    duration: float,
    client_addresses: str,
    calls: int,
    session_length: float,
    clients: str | None,
    events: str | None,
    app_cmd: str | None,
    seed: int | None,
    reports_dir: str | None,
    **backend_kwargs: Any,
) -> None:
    """Bring a topology up, swarm it, judge it, write the report, take it down."""
    from harness import lifecycle
    from harness.events import parse_events
    from harness.lifecycle import USER_CLASSES, RunSpec, SwarmOptions

    topology = load_topology(topology_name)
    backend = _backend(backend_kwargs, shlex.split(app_cmd) if app_cmd else None)
    if backend.dry_run:
        if backend.name == "local":
            raise UsageError("--dry-run is for the kind and kubeconfig backends: the local backend runs here")
        _print_plan(topology, backend)
        return
    modes = tuple(m.strip() for m in clients.split(",") if m.strip()) if clients else topology.clients.modes
    unknown = [m for m in modes if m not in USER_CLASSES]
    if unknown or not modes:
        raise UsageError(f"--clients: unknown kind {', '.join(unknown) or '(none)'}; use polling, upgrade, websocket")
    timeline = parse_events(events)
    if timeline and timeline[-1].at >= duration:
        raise UsageError(f"--events: {timeline[-1].label} is not before the end of the swarm ({duration:g}s)")
    options = SwarmOptions(
        users=users,
        spawn_rate=spawn_rate,
        duration=duration,
        client_addresses=client_addresses,
        calls=calls,
        session_length=session_length,
        modes=modes,
        whoami=not backend.app_cmd,
        processes=processes,
    )
    spec = RunSpec(
        topology,
        options,
        lifecycle.new_seed(seed),
        _reports_dir(reports_dir),
        backend=backend,
        events=timeline,
    )
    judgement = lifecycle.execute(spec, echo=click.echo)
    click.echo(judgement.text)
    click.echo(f"summary: {judgement.summary['report_dir']}/summary.json")
    click.echo(f"report:  {judgement.summary['report_dir']}/report.html")
    sys.exit(judgement.exit_code)


@cli.command()
@_topology_option
@_backend_options
@click.option("--name", default="sticky", show_default=True, help="local: a name to find the cluster by later.")
@_seed_option
@_reports_option
def up(
    topology_name: str,
    name: str,
    seed: int | None,
    reports_dir: str | None,
    **backend_kwargs: Any,
) -> None:
    """Bring a topology up. local: it keeps running until `harness down`; kind/kubeconfig: it stays up until
    Ctrl-C (the load-balancer simulator runs in this process)."""
    from harness.lifecycle import new_seed
    from harness.runner import bring_up, hold_up

    topology = load_topology(topology_name)
    backend = _backend(backend_kwargs)
    seed_value = new_seed(seed)
    if backend.name != "local":
        if backend.dry_run:
            _print_plan(topology, backend)
            return
        hold_up(topology, backend, reports_dir=_reports_dir(reports_dir), seed=seed_value, echo=click.echo)
        return
    if backend.dry_run or backend.keep_cluster:
        raise UsageError("--dry-run and --keep-cluster are for the kind and kubeconfig backends")
    cluster = bring_up(
        topology,
        name=name,
        reports_dir=_reports_dir(reports_dir),
        seed=seed_value,
        base_port=backend.base_port,
        echo=click.echo,
    )
    click.echo(f"cluster {name} is up: topology {cluster.topology.name}, run {cluster.run_id}, seed {cluster.seed}")
    click.echo(f"entry: {cluster.entry_url}")
    click.echo(f"swarm it:  locust -f scenarios/sticky.py --attach {name}")
    click.echo(f"stop it:   harness down --name {name}")


@cli.command()
@_topology_option
@click.option("--backend", type=click.Choice(["kind"]), default="kind", show_default=True)
@click.option("--out", "out_dir", required=True, help="Directory for the kind config and every manifest.")
@click.option("--kube-proxy-mode", type=click.Choice(["iptables", "nftables", "ipvs"]), default="iptables")
def render(topology_name: str, backend: str, out_dir: str, kube_proxy_mode: str) -> None:
    """Write what the kind backend would apply: the kind config and every manifest of a topology."""
    from harness.cluster.kind import render_to_dir

    for path in render_to_dir(load_topology(topology_name), Path(out_dir), proxy_mode=kube_proxy_mode):
        click.echo(str(path))


@cli.command()
@click.option("--name", default="sticky", show_default=True)
@click.option("--all", "all_runs", is_flag=True, help="Also stop every process any harness run left behind.")
@_reports_option
def down(name: str, all_runs: bool, reports_dir: str | None) -> None:
    """Stop a cluster brought up with `harness up`."""
    from harness.runner import take_down

    for line in take_down(name, reports_dir=_reports_dir(reports_dir), all_runs=all_runs):
        click.echo(line)


@cli.command()
@click.option("--name", default="sticky", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the full status as JSON.")
@_reports_option
def status(name: str, as_json: bool, reports_dir: str | None) -> None:
    """Show what a cluster brought up with `harness up` is running."""
    from harness.runner import attach

    info = attach(name, reports_dir=_reports_dir(reports_dir)).status()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"cluster {name}: topology {info['topology']}, run {info['run_id']}, seed {info['seed']}")
    click.echo(f"entry: {info['entry_url']}")
    for proc, alive in info["processes"].items():
        click.echo(f"  {proc:<10} {'running' if alive else 'NOT RUNNING'}")
    network = info.get("network") or {}
    for node, counters in (network.get("lb") or {}).get("nodes", {}).items():
        click.echo(f"  lb → {node}: {counters['connections']} connections, {counters['active']} active")


@cli.command()
def topologies() -> None:
    """List the built-in topologies and their expected verdicts; some need a real cluster (kind or kubeconfig)."""
    names = available_topologies()
    width = max((len(name) for name in names), default=16)
    for name in names:
        topo = load_topology(name)
        expected = ", ".join(f"{k} {v}" for k, v in topo.expected_verdicts().items())
        only = "  (kind/kubeconfig only: --backend kind)" if topo.kind_only else ""
        click.echo(f"{name:<{width}}  {expected}{only}")


def _add_commands() -> None:
    from harness.cli_proxy import proxy
    from harness.report.cli import compare_command, report_command

    cli.add_command(report_command)
    cli.add_command(compare_command)
    cli.add_command(proxy)


_add_commands()


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="harness", standalone_mode=False)
    except click.exceptions.Abort as abort:  # click turns a KeyboardInterrupt into Abort, the interrupt its cause
        cause = abort.__cause__ if isinstance(abort.__cause__, KeyboardInterrupt) else KeyboardInterrupt()
        click.echo(interrupts.interrupted_line(cause), err=True)
        return interrupts.exit_code(cause)
    except KeyboardInterrupt as exc:
        click.echo(interrupts.interrupted_line(exc), err=True)
        return interrupts.exit_code(exc)
    except click.ClickException as exc:
        exc.show()
        return 2
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except HarnessError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
