"""The kind backend and the kubeconfig backend: a topology on a real Kubernetes cluster.

``KindCluster`` creates (or reuses, by name) a kind cluster from ``clusters/kind/*.yaml``, builds and loads the
app image, applies the topology's manifests through the Kubernetes API, waits until every pod is ready, every
EndpointSlice lists them and every node's kube-proxy answers on the NodePort, then starts the load-balancer
simulator on the host in front of the workers: at their InternalIPs, or where the host cannot reach those (Docker
Desktop) at the host ports the kind config maps to each worker's nodePort. It deletes the cluster at the end if
this run created it, else only the run's namespace, unless ``keep``. ``KubeconfigCluster`` runs the same
manifests on an existing cluster (a kubeconfig context): no kind, no image build, no simulator; the entry point is
the user's real load balancer. The shared machinery (plan execution, scaling, evidence) is in ``cluster.py``.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Any

from harness.cluster.kind.balancer import BalancerThread
from harness.cluster.kind.cluster import Echo, KubeCluster, KubeFactory
from harness.cluster.kind.config import (
    DEFAULT_CLUSTER_NAME,
    NODE_LABEL,
    KindConfig,
    NodeAccess,
    kind_config_path,
    read_kind_config,
)
from harness.cluster.kind.kube import Kube, nodes_by_label, ready_endpoints
from harness.cluster.kind.manifests import APP_IMAGE, ENTRY_NODE_PORT, entry_service_name
from harness.cluster.kind.plan import PlanOptions, Step, evidence_steps
from harness.cluster.kind.preflight import CommandRunner
from harness.cluster.local.processes import run_checked, wait_until
from harness.errors import HarnessError, SetupError, UsageError
from harness.net import proxyproto
from harness.net.faults import Fault
from harness.net.lb import BalancerConfig, Target
from harness.topology import Topology

__all__ = ["KindCluster", "KubeconfigCluster"]

log = logging.getLogger(__name__)


def _node_handshake(host: str, port: int, proxy_protocol: str, timeout: float = 3.0) -> bool:
    """One Engine.IO handshake straight to a node's NodePort, with the PROXY header the balancer would send."""
    request = f"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            peer = sock.getpeername()[0]
            if proxy_protocol == "v1":
                sock.sendall(proxyproto.encode_v1("203.0.113.7", peer, 40000, port))
            elif proxy_protocol == "v2":
                sock.sendall(proxyproto.encode_v2("203.0.113.7", peer, 40000, port))
            sock.sendall(request.encode("ascii"))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return False
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) and b'"sid"' in body


class KindCluster(KubeCluster):
    """A topology on a kind cluster, with the load-balancer simulator on the host in front of its workers."""

    backend = "kind"

    def __init__(
        self,
        topology: Topology,
        *,
        run_id: str,
        run_dir: Path,
        seed: int = 0,
        cluster_name: str = DEFAULT_CLUSTER_NAME,
        kind_config: Path | None = None,
        keep: bool = False,
        dry_run: bool = False,
        node_access: NodeAccess | None = None,
        runner: CommandRunner = run_checked,
        kube_factory: KubeFactory = Kube,
        echo: Echo = print,
    ) -> None:
        """``node_access``: how the host reaches the nodes, ``internal-ip`` (Linux) or ``port-mapping`` (Docker
        Desktop; the kind config's extraPortMappings); None picks by platform."""
        access: NodeAccess = node_access or ("internal-ip" if sys.platform.startswith("linux") else "port-mapping")
        opts = PlanOptions(
            run_id=run_id,
            run_dir=run_dir,
            cluster_name=cluster_name,
            kind_config=kind_config or kind_config_path(),
            keep=keep,
            node_access=access,
            image=APP_IMAGE,
        )
        super().__init__(
            topology, opts, seed=seed, dry_run=dry_run, runner=runner, kube_factory=kube_factory,
            pull_policy="Never", echo=echo,
        )  # fmt: skip
        self.kind_config: KindConfig = read_kind_config(opts.kind_config)
        if len(self.kind_config.workers) < topology.nodes:
            raise UsageError(
                f"topology {topology.name} has {topology.nodes} nodes but {opts.kind_config} has only "
                f"{len(self.kind_config.workers)} workers: add workers (labelled {NODE_LABEL}) or use fewer nodes"
            )
        self.workers = self.kind_config.workers[: topology.nodes]
        self.created = False  # this run created the cluster (so it deletes it)
        self._exists = False  # a cluster of that name was there before
        self.nodes: dict[str, tuple[str, str]] = {}  # node-i -> (node name, InternalIP)
        self.node_port: int | None = None
        self.balancer: BalancerThread | None = None

    def evidence_plan(self) -> list[Step]:
        return evidence_steps(self.topology, self.opts, self.kind_config)

    @property
    def entry_url(self) -> str:
        if self.balancer is None:
            raise HarnessError("the cluster is not up: the load-balancer simulator is not running")
        host, port = self.balancer.address
        return f"http://{host}:{port}"

    def _fixed_node_port(self) -> int | None:
        return ENTRY_NODE_PORT if self.opts.node_access == "port-mapping" else None

    def _node_name(self, node: str) -> str:
        return next((label for label, (name, _) in self.nodes.items() if name == node), node)

    def set_node_in_balancer(self, node: str, enabled: bool) -> None:
        if self.balancer is None:
            raise HarnessError("the cluster is not up: the load-balancer simulator is not running")
        self.balancer.set_enabled(node, enabled)

    def _running_balancer(self) -> BalancerThread:
        if self.balancer is None:
            raise HarnessError("the cluster is not up: the load-balancer simulator is not running")
        return self.balancer

    def add_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        balancer = self._running_balancer()
        parsed = Fault.from_json(fault)
        return balancer.call(lambda: balancer.lb.add_fault(parsed).to_json())

    def clear_faults(self, *, node: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        balancer = self._running_balancer()
        return balancer.call(lambda: [f.to_json() for f in balancer.lb.clear_faults(node=node, name=name)])

    def balancer_faults(self) -> list[dict[str, Any]] | None:
        balancer = self._running_balancer()
        return balancer.call(balancer.lb.faults.to_json)

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["cluster"] = self.opts.cluster_name
        status["created_cluster"] = self.created
        status["proxy_mode"] = self.kind_config.proxy_mode
        status["nodes"] = {label: {"name": n, "ip": ip} for label, (n, ip) in self.nodes.items()}
        status["entry_url"] = self.entry_url if self.balancer else None
        status["network"] = {"lb": self.balancer.snapshot()} if self.balancer else None
        return status

    # -- kind's own steps ---------------------------------------------------------------------------------------------

    def _do_find_cluster(self, step: Step) -> None:
        assert step.argv is not None
        output = self.runner(step.argv, doing=step.description, timeout=step.timeout)
        self._exists = self.opts.cluster_name in output.split()

    def _do_create_cluster(self, step: Step) -> None:
        assert step.argv is not None
        if self._exists:
            log.info("reusing the kind cluster %s", self.opts.cluster_name)
            return
        self.created = True  # set first: a create that fails halfway is deleted as well
        self.runner(step.argv, doing=step.description, timeout=step.timeout)

    def _do_delete_namespace(self, step: Step) -> None:
        if not self.created:  # a cluster this run created goes whole
            super()._do_delete_namespace(step)

    def _do_delete_object(self, step: Step) -> None:
        if not self.created:
            super()._do_delete_object(step)

    def _do_delete_cluster(self, step: Step) -> None:
        assert step.argv is not None
        if self.created:
            self.runner(step.argv, doing=step.description, timeout=step.timeout)

    def _do_discover_nodes(self, _step: Step) -> None:
        found = nodes_by_label(self.kube.nodes(), NODE_LABEL)
        missing = [w for w in self.workers if w not in found]
        if missing:
            raise SetupError(
                f"the cluster {self.opts.cluster_name} has no node labelled {NODE_LABEL}={', '.join(missing)}: it "
                f"was made from another config than {self.opts.kind_config}; delete it "
                f"(`kind delete cluster --name {self.opts.cluster_name}`) or pass the config it was made from"
            )
        self.nodes = {w: found[w] for w in self.workers}

    def _do_discover_node_port(self, step: Step) -> None:
        service = self.kube.service(self.namespace, entry_service_name(self.topology))
        self.node_port = int(service["spec"]["ports"][0]["nodePort"])
        if self.opts.node_access == "port-mapping" and self.node_port != ENTRY_NODE_PORT:
            raise SetupError(
                f"the entry Service got nodePort {self.node_port}, not {ENTRY_NODE_PORT} that the kind config maps "
                "to the host: is another run's Service holding it? (`kubectl get svc -A | grep 30080`)"
            )

    def _targets(self) -> list[Target]:
        assert self.node_port is not None
        if self.opts.node_access == "port-mapping":
            return [Target(w, "127.0.0.1", self.kind_config.host_ports[w]) for w in self.workers]
        return [Target(w, self.nodes[w][1], self.node_port) for w in self.workers]

    def _serving_nodes(self) -> set[str]:
        """Nodes that answer on the NodePort: all, or under externalTrafficPolicy Local those with a ready pod."""
        if self.topology.entry_service.external_traffic_policy.value != "Local":
            return set(self.workers)
        endpoints = ready_endpoints(self.kube.endpoint_slices(self.namespace, entry_service_name(self.topology)))
        names = {e.node for e in endpoints}
        return {label for label, (name, _) in self.nodes.items() if name in names}

    def _do_probe_nodes(self, step: Step) -> None:
        proxy = self.topology.load_balancer.proxy_protocol
        serving = self._serving_nodes()
        for target in self._targets():
            if target.name not in serving:
                log.info("node %s has no local endpoint (externalTrafficPolicy Local): not probed", target.name)
                continue
            wait_until(
                lambda t=target: _node_handshake(t.host, t.port, proxy),  # type: ignore[misc]
                timeout=step.timeout,
                what=f"a handshake through node {target.name}'s NodePort ({target.host}:{target.port})",
                interval=1.0,
            )

    def _do_start_lb(self, _step: Step) -> None:
        config = BalancerConfig.from_settings(
            listen=("127.0.0.1", 0),
            targets=tuple(self._targets()),
            source_ip="0.0.0.0",
            settings=self.topology.load_balancer.model_dump(mode="json"),
            seed=self.seed,
        )
        self.balancer = BalancerThread(config)
        self.balancer.start()

    def _do_stop_lb(self, _step: Step) -> None:
        if self.balancer is not None:
            self.balancer.stop()
            self.balancer = None


class KubeconfigCluster(KubeCluster):
    """A topology on an existing cluster (a kubeconfig context) behind the user's own load balancer.

    The app image must be pullable by the cluster (push it to a registry it reaches and pass ``image``); nothing
    is built or loaded, and no cluster is created or deleted: only the run's namespace. Pass ``node_port`` (in the
    cluster's NodePort range) to pin the entry Service's nodePort to the one your load balancer targets."""

    backend = "kubeconfig"

    def __init__(
        self,
        topology: Topology,
        *,
        run_id: str,
        run_dir: Path,
        context: str,
        entry_url: str,
        image: str = APP_IMAGE,
        kubeconfig: Path | None = None,
        node_port: int | None = None,
        seed: int = 0,
        keep: bool = False,
        dry_run: bool = False,
        runner: CommandRunner = run_checked,
        kube_factory: KubeFactory = Kube,
        echo: Echo = print,
    ) -> None:
        if not entry_url.startswith(("http://", "https://")):
            raise UsageError(f"entry URL {entry_url!r}: give your load balancer's URL, such as http://lb.example:80")
        opts = PlanOptions(
            run_id=run_id,
            run_dir=run_dir,
            backend="kubeconfig",
            context=context,
            user_kubeconfig=kubeconfig,
            keep=keep,
            image=image,
        )
        super().__init__(
            topology, opts, seed=seed, dry_run=dry_run, runner=runner, kube_factory=kube_factory, echo=echo
        )
        self._entry_url = entry_url.rstrip("/")
        self._node_port = node_port

    def _fixed_node_port(self) -> int | None:
        return self._node_port

    @property
    def entry_url(self) -> str:
        return self._entry_url

    def set_node_in_balancer(self, node: str, enabled: bool) -> None:
        raise UsageError(
            f"the kubeconfig backend sends clients to your own load balancer ({self._entry_url}); take node "
            f"{node} out of its rotation there"
        )

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["context"] = self.opts.context
        status["entry_url"] = self._entry_url
        return status
