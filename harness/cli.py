"""The ``harness`` command: a thin shell over the library.

Exit codes: 0 when the measured verdict equals the topology's expected verdict (or the command did what it was
asked), 1 when the verdict differs, 2 on a usage or set-up error (the message says what to do), 130 on Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

import click

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
_backend_option = click.option(
    "--backend",
    type=click.Choice(["local"]),
    default="local",
    show_default=True,
    help="Where the topology runs: local = real processes on loopback addresses.",
)
_seed_option = click.option("--seed", type=int, default=None, help="Seed of the backend's random choices (replay).")
_base_port_option = click.option("--base-port", type=int, default=None, help="First of 5 ports (default: random).")
_reports_option = click.option("--reports-dir", default=None, help="Where runs are written (default: ./reports).")


@cli.command()
@_topology_option
@_backend_option
@click.option("--users", type=click.IntRange(1, 5000), default=30, show_default=True, help="Simulated clients.")
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
@_base_port_option
@_reports_option
def run(
    topology_name: str,
    backend: str,
    users: int,
    spawn_rate: float,
    duration: float,
    client_addresses: str,
    calls: int,
    clients: str | None,
    events: str | None,
    app_cmd: str | None,
    seed: int | None,
    base_port: int | None,
    reports_dir: str | None,
) -> None:
    """Bring a topology up, swarm it, judge it, write the report, take it down."""
    from harness.events import parse_events
    from harness.runner import USER_CLASSES, SwarmOptions, run_topology

    topology = load_topology(topology_name)
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
        modes=modes,
    )
    judgement = run_topology(
        topology,
        options,
        seed=seed if seed is not None else secrets.randbelow(2**31),
        base_port=base_port,
        reports_dir=_reports_dir(reports_dir),
        echo=click.echo,
        events=timeline,
        app_cmd=shlex.split(app_cmd) if app_cmd else None,
    )
    click.echo(judgement.text)
    click.echo(f"report: {judgement.summary['report_dir']}/summary.json")
    sys.exit(judgement.exit_code)


@cli.command()
@_topology_option
@_backend_option
@click.option("--name", default="sticky", show_default=True, help="A name to find the cluster by later.")
@_seed_option
@_base_port_option
@_reports_option
def up(
    topology_name: str,
    backend: str,
    name: str,
    seed: int | None,
    base_port: int | None,
    reports_dir: str | None,
) -> None:
    """Bring a topology up and leave it running (take it down with `harness down`)."""
    from harness.runner import bring_up

    cluster = bring_up(
        load_topology(topology_name),
        name=name,
        reports_dir=_reports_dir(reports_dir),
        seed=seed if seed is not None else secrets.randbelow(2**31),
        base_port=base_port,
    )
    click.echo(f"cluster {name} is up: topology {cluster.topology.name}, run {cluster.run_id}, seed {cluster.seed}")
    click.echo(f"entry: {cluster.entry_url}")
    click.echo(f"swarm it:  locust -f scenarios/sticky.py --attach {name}")
    click.echo(f"stop it:   harness down --name {name}")


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
    """List the built-in topologies and their expected verdicts."""
    for name in available_topologies():
        topo = load_topology(name)
        expected = ", ".join(f"{k} {v}" for k, v in topo.expected_verdicts().items())
        click.echo(f"{name:<16} {expected}")


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="harness", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted: everything this run started has been stopped", err=True)
        return 130
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
