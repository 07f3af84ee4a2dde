"""Clusters that outlive a command: ``harness up`` (bring one up and leave it), ``harness down`` and attaching.

A whole run (up, swarm, judge, down) is harness.lifecycle; its names are re-exported here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harness import interrupts
from harness.cluster.local.backend import LocalCluster
from harness.cluster.local.processes import find_run_processes, kill_group
from harness.errors import UsageError
from harness.lifecycle import (
    USER_CLASSES,
    BackendOptions,
    SwarmOptions,
    attached_state,
    make_cluster,
    run_topology,
    scenario_path,
    swarm,
)
from harness.runs import cluster_link, new_run_id
from harness.topology import Topology

__all__ = [
    "USER_CLASSES",
    "BackendOptions",
    "SwarmOptions",
    "attach",
    "bring_up",
    "hold_up",
    "make_cluster",
    "run_topology",
    "scenario_path",
    "swarm",
    "take_down",
]

Echo = Callable[[str], None]


def bring_up(
    topology: Topology, *, name: str, reports_dir: Path, seed: int, base_port: int | None, echo: Echo | None = None
) -> LocalCluster:
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
    if echo is not None:
        echo(f"bringing up cluster {name}: topology {topology.name}, run {run_id}")
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
        with interrupts.stopping():
            cluster.down()
        raise


def attach(name: str, *, reports_dir: Path) -> LocalCluster:
    return LocalCluster.attach(attached_state(name, reports_dir))


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
