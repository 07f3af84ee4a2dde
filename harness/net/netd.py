"""The network daemon of the local backend: the load balancer and every node's kube-proxy.

One process can run both (``--part all``, the default), or one part each (``--part lb``, ``--part nodes``): the local
backend runs two, so that a held session's descriptors are shared out (two in the balancer, two in the node's
kube-proxy) and a process's open-files limit goes twice as far. The control socket of a part is the plan's
``control_path``, with ``-nodes`` appended for the nodes part when the parts run apart (`control_path_of`).

The local backend starts it with a plan (a JSON file) and talks to it over a Unix socket, one JSON object per
line each way, the way the endpoints controller talks to kube-proxy: ``ping``, ``descriptors``, ``endpoints``
(replace a Service's endpoints on every node), ``lb_node`` (take a node out of the balancer or put it back),
``fault`` / ``clear_faults`` / ``faults`` (faults on demand in the balancer's data path, see
``harness.net.faults``) and ``snapshot`` (counters, health, faults and affinity tables, for status and evidence;
and the daemon's descriptors: running out of them is the harness's fault, see ``harness.net.descriptors``).
It runs until SIGTERM or SIGINT, on uvloop when it is installed.

Run as ``python -m harness.net.netd PLAN.json [--part all|lb|nodes]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.net import descriptors
from harness.net.faults import Fault
from harness.net.kubeproxy import Endpoint, ServiceProxy, ServiceRule
from harness.net.lb import BalancerConfig, LoadBalancer, Target, event_loop_factory

__all__ = ["PARTS", "NetPlan", "NodePlan", "ServicePlan", "control", "control_path_of", "main"]

log = logging.getLogger(__name__)

PARTS = ("all", "lb", "nodes")
_BALANCER_OPS = ("lb_node", "fault", "clear_faults", "faults")


def control_path_of(plan_path: str, part: str) -> str:
    """The control socket of ``part``: the plan's own, except for the nodes part run apart."""
    return plan_path + "-nodes" if part == "nodes" else plan_path


@dataclass(frozen=True)
class NodePlan:
    name: str
    ip: str


@dataclass(frozen=True)
class ServicePlan:
    name: str
    port: int  # the port every node listens on for this Service (NodePort, or the node's ClusterIP stand-in)
    affinity: str
    timeout_seconds: float
    snat: bool
    local_only: bool
    endpoints: list[dict[str, Any]]


@dataclass(frozen=True)
class NetPlan:
    run_id: str
    seed: int
    control_path: str
    nodes: list[NodePlan]
    services: list[ServicePlan]
    lb_listen: tuple[str, int]
    lb_source_ip: str
    lb_service: str  # the Service whose NodePort the balancer targets
    lb: dict[str, Any]  # the topology's load_balancer settings (harness.topology.LoadBalancer, as JSON)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetPlan:
        data = dict(data)
        data["nodes"] = [NodePlan(**n) for n in data["nodes"]]
        data["services"] = [ServicePlan(**s) for s in data["services"]]
        data["lb_listen"] = tuple(data["lb_listen"])
        return cls(**data)


class NetDaemon:
    def __init__(self, plan: NetPlan, part: str = "all") -> None:
        if part not in PARTS:
            raise UsageError(f"unknown part {part!r}: use one of {', '.join(PARTS)}")
        self.plan = plan
        self.part = part
        self.control_path = control_path_of(plan.control_path, part)
        self.proxies: dict[tuple[str, str], ServiceProxy] = {}
        self.servers: list[asyncio.Server] = []
        port = {s.name: s.port for s in plan.services}[plan.lb_service]
        self.lb: LoadBalancer | None = None
        if part in ("all", "lb"):
            self.lb = LoadBalancer(
                BalancerConfig.from_settings(
                    listen=plan.lb_listen,
                    targets=tuple(Target(n.name, n.ip, port) for n in plan.nodes),
                    source_ip=plan.lb_source_ip,
                    settings=plan.lb,
                    seed=plan.seed,
                )
            )

    async def start(self) -> None:
        if self.part in ("all", "nodes"):
            await self._start_nodes()
        if self.lb is not None:
            await self.lb.start()
        self.servers.append(await asyncio.start_unix_server(self._control, self.control_path))

    async def _start_nodes(self) -> None:
        for node in self.plan.nodes:
            for svc in self.plan.services:
                rule = ServiceRule(svc.name, svc.affinity, svc.timeout_seconds, svc.snat, svc.local_only)
                proxy = ServiceProxy(node.name, node.ip, rule, self.plan.seed)
                proxy.set_endpoints(Endpoint.from_json(e) for e in svc.endpoints)
                self.proxies[(node.name, svc.name)] = proxy
                self.servers.append(
                    await asyncio.start_server(proxy.handle, node.ip, svc.port, reuse_address=True, backlog=1024)
                )

    async def close(self) -> None:
        if self.lb is not None:
            await self.lb.close()
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        if not self.control_path.startswith("\0"):  # an abstract socket has no file
            with contextlib.suppress(OSError):
                Path(self.control_path).unlink()

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "run_id": self.plan.run_id, "part": self.part}
        if op == "descriptors":
            return {"ok": True, "descriptors": descriptors.snapshot()}
        if op == "snapshot":
            return {
                "ok": True,
                "lb": self.lb.snapshot() if self.lb is not None else None,
                "services": [p.snapshot() for p in self.proxies.values()],
                "descriptors": descriptors.snapshot(),
            }
        if op == "endpoints":
            service = str(request["service"])
            endpoints = [Endpoint.from_json(e) for e in request["endpoints"]]
            touched = 0
            for (_, svc), proxy in self.proxies.items():
                if svc == service:
                    proxy.set_endpoints(endpoints)
                    touched += 1
            if not touched:
                return {"ok": False, "error": f"no service {service!r}"}
            return {"ok": True}
        if op in _BALANCER_OPS:
            if self.lb is None:
                return {"ok": False, "error": f"{op}: this daemon runs the {self.part} part, not the balancer"}
            return self._balancer_request(self.lb, str(op), request)
        return {"ok": False, "error": f"unknown op {op!r}"}

    @staticmethod
    def _balancer_request(lb: LoadBalancer, op: str, request: dict[str, Any]) -> dict[str, Any]:
        if op == "lb_node":
            try:
                lb.set_enabled(str(request["node"]), bool(request["enabled"]))
            except KeyError:
                return {"ok": False, "error": f"no node {request.get('node')!r}"}
            return {"ok": True}
        if op == "fault":
            try:
                fault = lb.add_fault(Fault.from_json(request))
            except UsageError as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "fault": fault.to_json()}
        if op == "clear_faults":
            node, name = request.get("node"), request.get("name")
            gone = lb.clear_faults(node=None if node is None else str(node), name=None if name is None else str(name))
            return {"ok": True, "removed": [f.to_json() for f in gone]}
        return {"ok": True, "faults": lb.faults.to_json()}  # "faults"

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    response = self.handle_request(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    response = {"ok": False, "error": f"bad request: {exc}"}
                writer.write(json.dumps(response).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def control(path: str | Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a running daemon and return its answer (blocking; for the backend's use)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer: dict[str, Any] = json.loads(buf)
    return answer


async def _serve(plan: NetPlan, part: str) -> None:
    daemon = NetDaemon(plan, part)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(descriptors.exception_handler)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await daemon.start()
        print("ready", flush=True)
        await stop.wait()
    finally:
        await daemon.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.net.netd", description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--part", choices=PARTS, default="all", help="the balancer, the nodes, or both")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="netd %(levelname)s %(name)s: %(message)s")
    plan = NetPlan.from_json(json.loads(args.plan.read_text(encoding="utf-8")))
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(not args.no_uvloop)) as runner:
            runner.run(_serve(plan, args.part))
    except OSError as exc:
        print(f"netd: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
