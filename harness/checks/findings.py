"""Findings about the system under test that no stickiness check makes, each named for what it is.

A balancer whose idle timeout is shorter than the Engine.IO ping interval closes connections that are quiet
between two pings (a WebSocket between messages, a long-poll waiting for one): sessions break with a reset or a
lost connection, clients reconnect, and stickiness may well hold throughout, so continuity and affinity say
nothing. The balancer counts what it closed for idleness (its snapshot, ``network.json``); when it closed any and
its timeout is below the ping interval, the run has this finding and its verdict differs from the expected one.

A balancer that sends a PROXY header to a tier that does not read one (the tier takes it for the request line and
answers 400), or a tier that expects one the balancer does not send (nginx logs "broken header" and closes), fails
every session the same way an outage would; the backend asks the tier pods directly, both ways, at the end of the
run (`harness.cluster.base.Cluster.proxy_mismatch`), and the finding says which way round it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.topology import Topology

__all__ = ["IDLE_TIMEOUT", "PROXY_MISMATCH", "idle_timeout_finding", "read_network"]

IDLE_TIMEOUT = "balancer_idle_timeout"
PROXY_MISMATCH = "proxy_mismatch"  # the balancer's PROXY header and the tier's expectation disagree


def read_network(run_dir: Path) -> dict[str, Any] | None:
    """The cluster's network snapshot at the end of the run (``network.json``), if it left one."""
    try:
        data = json.loads((run_dir / "network.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def idle_timeout_finding(network: dict[str, Any] | None, topology: Topology, broken: int) -> dict[str, Any] | None:
    """The finding when the balancer closed idle connections with an idle timeout below the ping interval;
    ``broken``: sessions that broke with a transport error (no wrong-pod answer) and no event to explain them."""
    lb = (network or {}).get("lb") or {}
    closed = sum(int(n.get("idle_closed", 0)) for n in (lb.get("nodes") or {}).values() if isinstance(n, dict))
    idle, ping = topology.load_balancer.idle_timeout, topology.app.ping_interval
    if not closed or idle >= ping:
        return None
    reading = (
        f"the balancer's idle timeout ({idle:g} s) is shorter than the Engine.IO ping interval ({ping:g} s): it "
        f"closed {closed} connections quiet for {idle:g} s, and {broken} sessions broke with a reset or a lost "
        "connection; set the balancer's idle timeout above the ping interval, or the ping interval below it"
    )
    return {
        "kind": IDLE_TIMEOUT,
        "idle_closed": closed,
        "idle_timeout_s": idle,
        "ping_interval_s": ping,
        "sessions_broken": broken,
        "reading": reading,
    }
