"""The local backend: a topology as real processes on loopback addresses, no containers needed.

App pods are real Socket.IO servers (``python -m harness.app`` under uvicorn, or the user's own command), each on
its own 127.x address; the proxy tier runs real nginx or HAProxy with the config shipped in ``clusters/templates``;
the load balancer and every node's kube-proxy run in the network daemon (``harness.net.netd``: the balancer in one
process, the nodes in another, so that a held session's descriptors are shared out). Scaling starts or stops pods
and updates the endpoints that the nodes and the tier see, in the order Kubernetes does it.

The state of a cluster brought up with ``harness up`` is kept in a JSON file so that ``harness status`` and
``harness down`` (other processes) can find it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import random
import resource
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from harness.client.records import load_aliases
from harness.cluster.base import Cluster, Component, Pod, ProcessExit
from harness.cluster.local.processes import (
    ManagedProcess,
    find_run_processes,
    kill_groups,
    spawn,
    stop_together,
    wait_until,
)
from harness.cluster.local.tier import TierPod
from harness.errors import HarnessError, SetupError, UsageError
from harness.net import addresses
from harness.net.netd import NetPlan, NodePlan, ServicePlan, control, control_path_of
from harness.net.proxyproto import encode_v1, encode_v2
from harness.topology import Topology, load_topology

__all__ = ["NETD_DESCRIPTORS", "LocalCluster", "Ports"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 20.0
# the network daemon runs as two processes, so that a held session's descriptors are shared out between them:
# the balancer ("netd") and every node's kube-proxy model ("netd-nodes")
NETD_PARTS = {"netd": "lb", "netd-nodes": "nodes"}
# descriptors a client's session holds in each of those processes (a client side and an upstream side): one
# connection for WebSocket, up to two for polling (GET and POST)
NETD_DESCRIPTORS = {"polling": 4, "upgrade": 4, "websocket": 2}


class Ports:
    """The ports of one run: every piece has its own address, so one port per role is enough."""

    OFFSETS = {"lb": 0, "node_port": 1, "cluster_port": 2, "tier": 3, "app": 4}

    def __init__(self, base: int) -> None:
        self.base = base
        self.lb = base
        self.node_port = base + 1
        self.cluster_port = base + 2
        self.tier = base + 3
        self.app = base + 4


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as every listener of a run does: connections of an earlier run in TIME_WAIT do not make a port busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def handshake(url: str, timeout: float = 1.0) -> str | None:
    """One Engine.IO polling handshake; the x-pod of a 200 answer ('' if none), or None if it failed."""
    try:
        with requests.Session() as session:
            response = session.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=timeout)
    except requests.RequestException:
        return None
    if response.status_code != 200 or not response.text.startswith("0"):
        return None
    return response.headers.get("x-pod", "")


class _ProxiedConnection(http.client.HTTPConnection):
    """An HTTP connection that starts with a PROXY header, as the balancer's connections to a tier pod do."""

    def __init__(self, host: str, port: int, header: bytes, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.header = header

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.sendall(self.header)


def _first_line_with(path: Path, text: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return next((line.strip()[:300] for line in fh if text in line), None)
    except OSError:
        return None


def tier_handshake(pod: Pod, proxy_protocol: str, timeout: float = 1.0) -> bool:
    """One handshake sent straight to a tier pod (with the PROXY header the balancer would send): True on a 200."""
    src, sport = "127.240.255.1", 40000
    header = b""
    if proxy_protocol == "v1":
        header = encode_v1(src, pod.address, sport, pod.port)
    elif proxy_protocol == "v2":
        header = encode_v2(src, pod.address, sport, pod.port)
    conn = _ProxiedConnection(pod.address, pod.port, header, timeout)
    try:
        conn.request("GET", "/socket.io/?EIO=4&transport=polling", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read(64)
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return response.status == 200


def _out_of_descriptors(name: str, detail: str, limit: object) -> str:
    return (
        f"the network daemon ({name}) ran out of file descriptors ({detail}; its limit is {limit}): raise the "
        f"open-files limit (`ulimit -Hn`; a held WebSocket session takes {NETD_DESCRIPTORS['websocket']} in each "
        f"part of the daemon, a polling one up to {NETD_DESCRIPTORS['polling']}) or swarm fewer clients"
    )


class LocalCluster(Cluster):
    def __init__(
        self,
        topology: Topology,
        *,
        run_id: str,
        run_dir: Path,
        seed: int,
        base_port: int | None = None,
        attached: bool = True,
        app_cmd: list[str] | None = None,
    ) -> None:
        if topology.kind_only:
            raise UsageError(
                f"topology {topology.name} runs the ingress-nginx controller, which needs a real cluster: "
                "use --backend kind (or --backend kubeconfig); the local backend runs nginx and HAProxy tiers only"
            )
        self.topology = topology
        self.run_id = run_id
        self.run_dir = run_dir
        self.seed = seed
        self.attached = attached
        self.app_cmd = app_cmd
        self._base_port = base_port
        self.ports: Ports | None = None
        self.app_pods: list[Pod] = []
        self.tier_pods: list[Pod] = []
        self.processes: dict[str, ManagedProcess] = {}
        self.tiers: dict[str, TierPod] = {}
        self._next_index: dict[Component, int] = {"app": 0, "tier": 0}
        # An abstract Unix socket (Linux): no file to clean up, and no limit from the length of run_dir's path.
        self.control_path = "\0sticky-harness/" + hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:24]
        self.state_path = run_dir / "cluster.json"
        self.removed_pods: list[str] = []
        self.known_pods: dict[str, str] = {}
        self._down = False
        self._control_misses: dict[str, int] = {}  # per part: requests in a row the network daemon did not answer
        # events (their own thread) and the process watch change pods and endpoints: one change at a time
        self._lock = threading.RLock()

    # -- the interface ------------------------------------------------------------------------------------

    @property
    def entry_url(self) -> str:
        if self.ports is None:
            raise HarnessError("the cluster is not up")
        return f"http://{addresses.LB_IP}:{self.ports.lb}"

    def pods(self, component: Component = "app") -> list[Pod]:
        return list(self.app_pods if component == "app" else self.tier_pods)

    def up(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ports = self._allocate_ports()
        for _ in range(self.topology.app.replicas):
            self._start_app_pod()
        self._wait_app_ready(self.app_pods)
        if self.topology.tier is not None:
            for _ in range(self.topology.tier.replicas):
                self._start_tier_pod()
            self._wait_tier_ready(self.tier_pods)
        self._start_netd()
        mismatch = self.proxy_mismatch()
        if mismatch is not None:  # no handshake can pass the entry: the run goes on, and its verdict names why
            log.warning("the entry cannot answer: %s", mismatch)
        else:
            wait_until(
                lambda: handshake(self.entry_url) is not None,
                timeout=READY_TIMEOUT,
                what=f"a handshake through the load balancer at {self.entry_url}",
                interval=0.1,
                on_fail=self._diagnostics,
            )
        self.save_state()
        log.info("cluster %s up: %s", self.run_id, self.entry_url)

    def down(self) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
        # the network first (clients see their connections end), then every pod at once
        stop_together([p for p in self.processes.values() if p.name in NETD_PARTS], grace=3.0)
        stop_together([p for p in self.processes.values() if p.name not in NETD_PARTS], grace=3.0)
        kill_groups(list(find_run_processes(self.run_id)), grace=1.0)  # anything a piece started and left behind
        with contextlib.suppress(OSError):
            self.state_path.unlink()

    def scale(self, component: Component, replicas: int) -> None:
        with self._lock:
            self._scale(component, replicas)

    def _scale(self, component: Component, replicas: int) -> None:
        if replicas < 1:
            raise UsageError(f"cannot scale {component} to {replicas}: at least 1 replica")
        if component == "tier" and self.topology.tier is None:
            raise UsageError(f"topology {self.topology.name} has no tier to scale")
        current = self.pods(component)
        if replicas > len(current):
            new = [self._start_pod(component) for _ in range(replicas - len(current))]
            self._wait_ready(component, new)
            self._publish(component)
        elif replicas < len(current):
            leaving = current[replicas:]
            self._set_pods(component, current[:replicas])
            self._publish(component)  # out of the endpoints first, then stopped, as Kubernetes does
            for pod in leaving:
                self.removed_pods.append(pod.name)
                self.processes.pop(pod.name).stop(grace=5.0)
                self.tiers.pop(pod.name, None)
        self.save_state()

    def kill(self, component: Component) -> str:
        with self._lock:
            return self._kill(component)

    def _kill(self, component: Component) -> str:
        pods = self.pods(component)
        victim = random.Random(f"{self.seed}/kill/{len(self.removed_pods)}").choice(pods)
        self.processes.pop(victim.name).stop(grace=0.0)  # SIGTERM then SIGKILL at once: a crash, no drain
        self._set_pods(component, [p for p in pods if p.name != victim.name])
        self.removed_pods.append(victim.name)
        self.tiers.pop(victim.name, None)
        self._publish(component)
        replacement = self._start_pod(component)
        self._wait_ready(component, [replacement])
        self._publish(component)
        self.save_state()
        return victim.name

    def restart(self, component: Component) -> None:
        with self._lock:
            self._restart(component)

    def _restart(self, component: Component) -> None:
        for old in self.pods(component):
            new = self._start_pod(component)
            self._wait_ready(component, [new])
            self._publish(component)
            self._set_pods(component, [p for p in self.pods(component) if p.name != old.name])
            self._publish(component)
            self.removed_pods.append(old.name)
            self.processes.pop(old.name).stop(grace=5.0)
            self.tiers.pop(old.name, None)
        self.save_state()

    def set_node_in_balancer(self, node: str, enabled: bool) -> None:
        with self._lock:
            self._control({"op": "lb_node", "node": node, "enabled": enabled})

    def node_in_balancer(self, node: str) -> bool | None:
        lb = self._control({"op": "snapshot"}, part="lb").get("lb") or {}
        return node not in lb.get("disabled", [])

    def add_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        answer = self._control({**fault, "op": "fault"})
        return dict(answer["fault"])

    def clear_faults(self, *, node: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"op": "clear_faults"}
        if node is not None:
            request["node"] = node
        if name is not None:
            request["name"] = name
        return list(self._control(request).get("removed", []))

    def balancer_faults(self) -> list[dict[str, Any]] | None:
        return list(self._control({"op": "faults"}).get("faults", []))

    def harness_faults(self) -> list[str]:
        """A part of the network daemon out of descriptors (its clients would see resets the checks blame on the
        topology), or not answering its control socket twice in a row. Out of descriptors, it may not even take
        the control connection: then its descriptors are counted from /proc."""
        if self._down:
            return []
        faults = []
        for name, part in NETD_PARTS.items():
            try:
                answer = self._control({"op": "descriptors"}, part=part)
            except HarnessError as exc:
                self._control_misses[part] = self._control_misses.get(part, 0) + 1
                full = self._at_descriptor_limit(name)
                if full is not None:
                    faults.append(_out_of_descriptors(name, f"{full[0]} open, all it may have", full[1]))
                elif self._control_misses[part] >= 2:
                    faults.append(str(exc))
                continue
            self._control_misses[part] = 0
            d = answer.get("descriptors") or {}
            if d.get("exhausted"):
                detail = f"{d.get('error')}; {d['exhausted']} connection(s) failed so"
                faults.append(_out_of_descriptors(name, detail, d.get("limit")))
        return faults

    def _at_descriptor_limit(self, name: str) -> tuple[int, int] | None:
        """(open, limit) of a network daemon process when it is at its open-files limit, else None."""
        process = self.processes.get(name)
        if process is None:
            return None
        try:
            open_now = len(os.listdir(f"/proc/{process.pid}/fd"))
            limit = resource.prlimit(process.pid, resource.RLIMIT_NOFILE)[0]
        except (OSError, ValueError):
            return None
        return (open_now, limit) if open_now >= limit - 8 else None

    def pod_answers(self, pod: Pod) -> bool | None:
        if pod.component == "app":
            return handshake(f"http://{pod.address}:{pod.port}", timeout=1.0) is not None
        return tier_handshake(pod, self._tier_header())

    def _tier_header(self) -> str:
        """The PROXY header the tier reads (what its pods are probed with): the balancer's, or its own choice."""
        tier = self.topology.proxy_tier
        sends = self.topology.load_balancer.proxy_protocol
        if tier is None or not tier.reads_proxy_protocol(sends):
            return "none"
        return sends if sends != "none" else "v1"

    def proxy_mismatch(self) -> str | None:
        """The balancer's PROXY header and the tier's expectation disagree: asked directly, a tier pod answers a
        handshake sent the other way but not one sent as the balancer sends it. None when they agree."""
        tier = self.topology.proxy_tier
        if tier is None:
            return None
        sends = self.topology.load_balancer.proxy_protocol
        other = "none" if sends != "none" else "v1"
        for pod in self.pods("tier"):
            if tier_handshake(pod, sends) or not tier_handshake(pod, other):
                continue
            log = _first_line_with(self.run_dir / "pods" / pod.name / "error.log", "broken header")
            seen = f'; nginx logged: "{log}"' if log else ""
            if sends == "none":
                return (
                    f"the tier expects a PROXY header the balancer does not send (load_balancer.proxy_protocol: none): "
                    f"{pod.name} answers a handshake only with one{seen}"
                )
            return (
                f"the balancer sends PROXY {sends} headers the tier does not read: {pod.name} answers a handshake only "
                "without one (it takes the header for the request line)"
            )
        return None

    def unplanned_exits(self) -> list[ProcessExit]:
        """Processes gone without being stopped; a pod among them leaves its endpoints (not ready), as kubelet
        and the endpoints controller would make it, so the rest of the run is not sent to a dead address."""
        with self._lock:
            if self._down:
                return []
            gone = [(n, p) for n, p in self.processes.items() if not p.stopping and not p.alive()]
            exits = []
            touched: set[Component] = set()
            for name, process in gone:
                del self.processes[name]
                component = "harness"
                comp: Component
                for comp in ("app", "tier"):
                    pods = self.pods(comp)
                    if any(p.name == name for p in pods):
                        component = comp
                        touched.add(comp)
                        self._set_pods(comp, [p for p in pods if p.name != name])
                        self.removed_pods.append(name)
                        self.tiers.pop(name, None)
                exits.append(ProcessExit(name, component, process.exit_status(), time.time()))
            for comp in sorted(touched):
                with contextlib.suppress(HarnessError):
                    self._publish(comp)
            if exits:
                with contextlib.suppress(OSError):
                    self.save_state()
            return exits

    def _set_pods(self, component: Component, pods: list[Pod]) -> None:
        if component == "app":
            self.app_pods = pods
        else:
            self.tier_pods = pods

    def _wait_ready(self, component: Component, pods: list[Pod]) -> None:
        if component == "app":
            self._wait_app_ready(pods)
        else:
            self._wait_tier_ready(pods)

    def status(self) -> dict[str, Any]:
        snapshot: dict[str, Any] | None
        try:
            snapshot = self._snapshot()
        except (HarnessError, ValueError):
            snapshot = None
        return {
            "run_id": self.run_id,
            "backend": "local",
            "topology": self.topology.name,
            "seed": self.seed,
            "entry_url": self.entry_url if self.ports else None,
            "processes": {name: p.alive() for name, p in self.processes.items()},
            "pods": [p.to_json() for p in self.app_pods + self.tier_pods],
            "network": snapshot,
        }

    # -- pieces -------------------------------------------------------------------------------------------

    def _allocate_ports(self) -> Ports:
        hosts = {
            "lb": [addresses.LB_IP],
            "node_port": [addresses.node_ip(i) for i in range(self.topology.nodes)],
            "cluster_port": [addresses.node_ip(i) for i in range(self.topology.nodes)],
            "tier": [addresses.tier_pod_ip(i) for i in range(self.topology.tier.replicas if self.topology.tier else 0)],
            "app": [addresses.app_pod_ip(i) for i in range(self.topology.app.replicas)],
        }

        def all_free(base: int) -> bool:
            return all(port_free(h, base + Ports.OFFSETS[role]) for role, hs in hosts.items() for h in hs)

        if self._base_port is not None:
            if not all_free(self._base_port):
                raise SetupError(
                    f"ports {self._base_port}-{self._base_port + 4} are in use on this run's loopback addresses: "
                    "choose another --base-port, or run `harness down --all` if an earlier run left them open"
                )
            return Ports(self._base_port)
        # seeded like every other choice of the backend: nginx's consistent hash places servers by "address:port",
        # so the same seed and client addresses give the same mapping of clients to pods, run after run
        rng = random.Random(f"{self.seed}/ports")
        for _ in range(50):
            base = rng.randrange(20000, 60000, 10)
            if all_free(base):
                return Ports(base)
        raise SetupError("found no free ports on the loopback addresses after 50 tries: is 127.0.0.0/8 usable?")

    def _start_pod(self, component: Component) -> Pod:
        return self._start_app_pod() if component == "app" else self._start_tier_pod()

    def _start_app_pod(self) -> Pod:
        assert self.ports is not None
        index = self._next_index["app"]
        self._next_index["app"] = index + 1
        pod = Pod(
            name=f"app-{index}",
            component="app",
            node=f"node-{index % self.topology.nodes}",
            address=addresses.app_pod_ip(index),
            port=self.ports.app,
        )
        if not port_free(pod.address, pod.port):
            raise SetupError(f"{pod.address}:{pod.port} is in use: cannot start {pod.name}")
        argv = self.app_cmd or [sys.executable, "-m", "harness.app"]
        env = {
            "HOST": pod.address,
            "PORT": str(pod.port),
            "POD_NAME": pod.name,
            "PING_INTERVAL": f"{self.topology.app.ping_interval:g}",
            "PING_TIMEOUT": f"{self.topology.app.ping_timeout:g}",
        }
        self.processes[pod.name] = spawn(
            pod.name,
            argv,
            run_id=self.run_id,
            log_path=self.run_dir / "pods" / pod.name / "stdout.log",
            env=env,
            attached=self.attached,
        )
        self.app_pods.append(pod)
        self._record_address(pod)
        return pod

    def _record_address(self, pod: Pod) -> None:
        """Keep ``pods.json`` (address → pod name, every app pod ever): a proxy tier's ``x-upstream`` names pods
        by address, which is all the harness learns about an app that sends no ``x-pod``."""
        self.known_pods[f"{pod.address}:{pod.port}"] = pod.name
        (self.run_dir / "pods.json").write_text(json.dumps(self.known_pods, indent=1), encoding="utf-8")

    def _start_tier_pod(self) -> Pod:
        tier = self.topology.proxy_tier
        assert self.ports is not None and tier is not None
        index = self._next_index["tier"]
        self._next_index["tier"] = index + 1
        pod = Pod(
            name=f"{tier.kind}-{index}",
            component="tier",
            node=f"node-{index % self.topology.nodes}",
            address=addresses.tier_pod_ip(index),
            port=self.ports.tier,
        )
        tier_pod = self._tier_pod(pod, attached=self.attached)
        self.tiers[pod.name] = tier_pod
        self.processes[pod.name] = tier_pod.start(self._tier_upstreams(pod))
        self.tier_pods.append(pod)
        return pod

    def _tier_pod(self, pod: Pod, *, attached: bool) -> TierPod:
        """The nginx or HAProxy process of a tier pod (not started)."""
        tier = self.topology.proxy_tier
        assert tier is not None
        return TierPod(
            kind=tier.kind,
            name=pod.name,
            node=pod.node,
            address=pod.address,
            port=pod.port,
            template=tier.template,
            proxy_protocol=tier.reads_proxy_protocol(self.topology.load_balancer.proxy_protocol),
            pod_dir=self.run_dir / "pods" / pod.name,
            run_id=self.run_id,
            attached=attached,
        )

    def _tier_upstreams(self, tier_pod: Pod) -> list[tuple[str, str]]:
        """Where a tier pod sends requests, as (name, "host:port"): the app Service through its own node's
        kube-proxy, or the app pods' endpoints directly."""
        tier = self.topology.proxy_tier
        assert self.ports is not None and tier is not None
        if tier.upstream == "service":
            node_index = int(tier_pod.node.split("-")[1])
            return [("app", f"{addresses.node_ip(node_index)}:{self.ports.cluster_port}")]
        return [(p.name, f"{p.address}:{p.port}") for p in self.app_pods if p.ready]

    def _services(self) -> list[ServicePlan]:
        assert self.ports is not None
        topo = self.topology
        app_endpoints = [self._endpoint(p) for p in self.app_pods]
        services = []
        if topo.tier is not None:
            spec = topo.tier.service
            services.append(
                ServicePlan(
                    name="tier",
                    port=self.ports.node_port,
                    affinity=spec.session_affinity.value,
                    timeout_seconds=spec.timeout_seconds,
                    snat=spec.external_traffic_policy == "Cluster",
                    local_only=spec.external_traffic_policy == "Local",
                    endpoints=[self._endpoint(p) for p in self.tier_pods],
                )
            )
            # The app's ClusterIP Service, reached from tier pods through their node's kube-proxy.
            services.append(
                ServicePlan(
                    name="app",
                    port=self.ports.cluster_port,
                    affinity=topo.app.service.session_affinity.value,
                    timeout_seconds=topo.app.service.timeout_seconds,
                    snat=False,
                    local_only=False,
                    endpoints=app_endpoints,
                )
            )
        else:
            spec = topo.app.service
            services.append(
                ServicePlan(
                    name="app",
                    port=self.ports.node_port,
                    affinity=spec.session_affinity.value,
                    timeout_seconds=spec.timeout_seconds,
                    snat=spec.external_traffic_policy == "Cluster",
                    local_only=spec.external_traffic_policy == "Local",
                    endpoints=app_endpoints,
                )
            )
        return services

    @staticmethod
    def _endpoint(pod: Pod) -> dict[str, Any]:
        return {"name": pod.name, "host": pod.address, "port": pod.port, "node": pod.node, "ready": pod.ready}

    def _start_netd(self) -> None:
        assert self.ports is not None
        plan = NetPlan(
            run_id=self.run_id,
            seed=self.seed,
            control_path=self.control_path,
            nodes=[NodePlan(f"node-{i}", addresses.node_ip(i)) for i in range(self.topology.nodes)],
            services=self._services(),
            lb_listen=(addresses.LB_IP, self.ports.lb),
            lb_source_ip=addresses.LB_IP,
            lb_service="tier" if self.topology.tier is not None else "app",
            lb=self.topology.load_balancer.model_dump(mode="json"),
        )
        plan_path = self.run_dir / "netplan.json"
        plan_path.write_text(json.dumps(plan.to_json(), indent=2), encoding="utf-8")
        for name, part in NETD_PARTS.items():
            process = spawn(
                name,
                [sys.executable, "-m", "harness.net.netd", str(plan_path), "--part", part],
                run_id=self.run_id,
                log_path=self.run_dir / f"{name}.log",
                attached=self.attached,
            )
            self.processes[name] = process
            path = control_path_of(self.control_path, part)

            def answers(process: ManagedProcess = process, path: str = path) -> bool:
                if not process.alive():
                    raise SetupError(f"the network daemon ({process.name}) exited at start:\n{process.log_tail()}")
                try:
                    return bool(control(path, {"op": "ping"}, timeout=1.0).get("ok"))
                except OSError:
                    return False

            what = f"the network daemon ({name}) answering"
            wait_until(answers, timeout=READY_TIMEOUT, what=what, on_fail=process.log_tail)

    def _publish(self, component: Component) -> None:
        """Push the current endpoints of a component to every node (and, for the app, to the tier)."""
        if component == "app":
            endpoints = [self._endpoint(p) for p in self.app_pods]
            self._control({"op": "endpoints", "service": "app", "endpoints": endpoints})
            if self.topology.proxy_tier is not None and self.topology.proxy_tier.upstream == "endpoints":
                for pod in self.tier_pods:
                    self.tiers[pod.name].reload(self._tier_upstreams(pod))
        else:
            endpoints = [self._endpoint(p) for p in self.tier_pods]
            self._control({"op": "endpoints", "service": "tier", "endpoints": endpoints})

    def _control(self, request: dict[str, Any], part: str | None = None) -> dict[str, Any]:
        """One request to the part of the network daemon it is for (endpoints: the nodes; the rest: the
        balancer); ``part`` says which, for requests both parts answer (ping, descriptors, snapshot)."""
        part = part or ("nodes" if request.get("op") == "endpoints" else "lb")
        try:
            answer = control(control_path_of(self.control_path, part), request)
        except OSError as exc:
            raise HarnessError(f"the network daemon ({part}) of run {self.run_id} does not answer: {exc}") from exc
        if not answer.get("ok"):
            raise HarnessError(f"the network daemon refused {request.get('op')}: {answer.get('error')}")
        return answer

    def _snapshot(self) -> dict[str, Any]:
        """The balancer's and the nodes' snapshots as one (the form of a daemon that runs both parts)."""
        lb = self._control({"op": "snapshot"}, part="lb")
        nodes = self._control({"op": "snapshot"}, part="nodes")
        return {
            "ok": True,
            "lb": lb["lb"],
            "services": nodes["services"],
            "descriptors": {"lb": lb["descriptors"], "nodes": nodes["descriptors"]},
        }

    def _wait_app_ready(self, pods: list[Pod]) -> None:
        for pod in pods:
            process = self.processes[pod.name]

            def ready(pod: Pod = pod, process: ManagedProcess = process) -> bool:
                if not process.alive():
                    raise SetupError(f"app pod {pod.name} exited at start:\n{process.log_tail()}")
                return handshake(f"http://{pod.address}:{pod.port}", timeout=0.5) is not None

            wait_until(
                ready,
                timeout=READY_TIMEOUT,
                what=f"app pod {pod.name} answering a handshake",
                interval=0.1,
                on_fail=process.log_tail,
            )

    def _wait_tier_ready(self, pods: list[Pod]) -> None:
        for pod in pods:
            process = self.processes[pod.name]
            tier_pod = self.tiers[pod.name]

            def ready(pod: Pod = pod, process: ManagedProcess = process, tier_pod: TierPod = tier_pod) -> bool:
                if not process.alive():
                    raise SetupError(f"tier pod {pod.name} exited at start:\n{tier_pod.log_tail()}")
                return not port_free(pod.address, pod.port)

            wait_until(ready, timeout=READY_TIMEOUT, what=f"tier pod {pod.name} listening", on_fail=tier_pod.log_tail)

    def _diagnostics(self) -> str:
        parts = []
        for name, process in self.processes.items():
            if not process.alive():
                parts.append(f"{name} is not running:\n{process.log_tail(10)}")
        return "\n".join(parts)

    # -- state for other processes ------------------------------------------------------------------------

    def save_state(self) -> None:
        assert self.ports is not None
        state = {
            "run_id": self.run_id,
            "backend": "local",
            "topology": self.topology.name,
            "seed": self.seed,
            "base_port": self.ports.base,
            "run_dir": str(self.run_dir),
            "entry_url": self.entry_url,
            "app_pods": [p.to_json() for p in self.app_pods],
            "tier_pods": [p.to_json() for p in self.tier_pods],
            "processes": {n: {"pid": p.pid, "argv": p.argv, "log": str(p.log_path)} for n, p in self.processes.items()},
            "next_index": dict(self._next_index),
            "removed_pods": self.removed_pods,
            "saved": time.time(),
        }
        self.state_path.write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def attach(cls, state_path: Path) -> LocalCluster:
        """A handle on a cluster that another process brought up (``harness up``)."""
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"no cluster state at {state_path}: {exc}") from exc
        cluster = cls(
            load_topology(state["topology"]),
            run_id=state["run_id"],
            run_dir=Path(state["run_dir"]),
            seed=state["seed"],
            base_port=state["base_port"],
            attached=False,
        )
        cluster.ports = Ports(state["base_port"])
        cluster.app_pods = [Pod(**p) for p in state["app_pods"]]
        cluster.tier_pods = [Pod(**p) for p in state["tier_pods"]]
        cluster.processes = {
            n: ManagedProcess(n, p["argv"], Path(p["log"]), p["pid"]) for n, p in state["processes"].items()
        }
        cluster._next_index = state["next_index"]
        cluster.removed_pods = state.get("removed_pods", [])
        cluster.known_pods = load_aliases(cluster.run_dir)
        for pod in cluster.tier_pods:
            tier_pod = cluster._tier_pod(pod, attached=False)
            tier_pod.process = cluster.processes[pod.name]
            cluster.tiers[pod.name] = tier_pod
        return cluster
