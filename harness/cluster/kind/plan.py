"""What ``up`` and ``down`` do on a real cluster, as data: an ordered list of steps, each a command or an API call.

Bringing a topology up on kind is a dozen commands and API calls whose order matters (the cluster before the image
load, the app's endpoints before a tier config that lists them, every node programmed before the balancer sends
anything). Writing them down as data lets ``--dry-run`` print exactly what would run, lets unit tests check the
order without Docker, and keeps the executor (``backend.py``) a small loop that dispatches on ``Step.action``, as
kind's own create is a list of actions. Each step is a command (an argv for docker, kind or kubectl), an API call
(verb, kind, namespace, name) made through the Kubernetes client, or work on the host (preflight, probes, the
load-balancer simulator). ``when`` says when a step runs if not always (a reused cluster is not created, and not
deleted; evidence is collected only on failure).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.cluster.kind.config import (
    DEFAULT_CLUSTER_NAME,
    KindConfig,
    NodeAccess,
    kind_config_path,
    read_kind_config,
    repo_root,
)
from harness.cluster.kind.ingress import describe_object, ingress_nginx_objects
from harness.cluster.kind.manifests import APP_IMAGE, entry_service_name, namespace_for, render_manifests
from harness.cluster.kind.objects import CLUSTER_SCOPED
from harness.topology import Topology

__all__ = [
    "ApiCall",
    "PlanOptions",
    "Step",
    "down_steps",
    "dry_run_plan",
    "evidence_steps",
    "format_plan",
    "up_steps",
]


@dataclass(frozen=True, slots=True)
class ApiCall:
    """A call to the Kubernetes API, for printing: ``PATCH Deployment ns/app (scale to 3)``."""

    verb: str
    kind: str
    namespace: str | None = None
    name: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        target = "/".join(p for p in (self.namespace, self.name) if p)
        return " ".join(p for p in (self.verb, self.kind, target, f"({self.detail})" if self.detail else "") if p)


@dataclass(frozen=True, slots=True)
class Step:
    """One step: a command (``argv``), an API call (``api``), or host-side work (neither)."""

    phase: str  # preflight, cluster, image, apply, wait, discover, balancer, evidence, down
    description: str
    action: str  # what the executor does (backend.py dispatches on it)
    argv: tuple[str, ...] | None = None
    api: ApiCall | None = None
    when: str = ""  # empty: always
    timeout: float = 120.0
    output: str | None = None  # evidence: the file (below evidence/) that receives the command's output
    args: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        if self.argv is not None:
            how = f"$ {shlex.join(self.argv)}"
        elif self.api is not None:
            how = f"API {self.api}"
        else:
            how = "(on the host)"
        return f"[{self.phase}] {self.description}: {how}" + (f"  [{self.when}]" if self.when else "")


@dataclass(frozen=True)
class PlanOptions:
    run_id: str
    run_dir: Path
    backend: Literal["kind", "kubeconfig"] = "kind"
    cluster_name: str = DEFAULT_CLUSTER_NAME
    kind_config: Path = field(default_factory=kind_config_path)
    context: str | None = None  # kubeconfig backend: the context of the existing cluster
    user_kubeconfig: Path | None = None  # kubeconfig backend: None = the client's default ($KUBECONFIG, ~/.kube)
    keep: bool = False
    node_access: NodeAccess = "internal-ip"
    image: str = APP_IMAGE
    root: Path = field(default_factory=repo_root)

    @property
    def namespace(self) -> str:
        return namespace_for(self.run_id)

    @property
    def kubeconfig(self) -> Path | None:
        return self.run_dir / "kubeconfig" if self.backend == "kind" else self.user_kubeconfig

    def kubectl(self, *args: str) -> tuple[str, ...]:
        prefix: list[str] = ["kubectl"]
        if self.kubeconfig is not None:
            prefix += ["--kubeconfig", str(self.kubeconfig)]
        if self.context is not None:
            prefix += ["--context", self.context]
        return (*prefix, *args)


def _cluster_steps(topology: Topology, opts: PlanOptions) -> list[Step]:
    name, kubeconfig = opts.cluster_name, str(opts.kubeconfig)
    dockerfile = opts.root / "harness" / "app" / "Dockerfile"
    steps = [
        Step("cluster", f"look for a kind cluster named {name}", "find_cluster", argv=("kind", "get", "clusters")),
        Step(
            "cluster",
            f"create the kind cluster {name} from {opts.kind_config.name}",
            "create_cluster",
            argv=(
                *("kind", "create", "cluster", "--name", name, "--config", str(opts.kind_config)),
                *("--kubeconfig", kubeconfig, "--wait", "5m"),
            ),
            when=f"unless a cluster named {name} exists (then it is reused)",
            timeout=600.0,
        ),
        Step(
            "cluster",
            "write the cluster's kubeconfig for this run",
            "run",
            argv=("kind", "export", "kubeconfig", "--name", name, "--kubeconfig", kubeconfig),
        ),
        Step(
            "image",
            "build the app image from harness/app/Dockerfile",
            "run",
            argv=("docker", "build", "-t", opts.image, "-f", str(dockerfile), str(opts.root)),
            timeout=900.0,
        ),
        Step(
            "image",
            "load the app image into every node",
            "run",
            argv=("kind", "load", "docker-image", opts.image, "--name", name),
            timeout=600.0,
        ),
    ]
    return steps


def _apply(kind: str, ns: str, name: str, description: str) -> Step:
    namespace = None if kind in CLUSTER_SCOPED else ns
    return Step("apply", description, "apply", api=ApiCall("APPLY", kind, namespace, name), args={"kind": kind})


def _wait(component: str, ns: str, replicas: int) -> list[Step]:
    return [
        Step(
            "wait",
            f"every {component} pod ready (readiness probe passing)",
            "wait_rollout",
            api=ApiCall(
                "GET", "Deployment", ns, component, f"polled until {replicas} ready replicas, rollout complete"
            ),
            timeout=300.0,
            args={"component": component, "replicas": replicas},
        ),
        Step(
            "wait",
            f"the {component} Service's EndpointSlices list exactly the ready {component} pods",
            "wait_endpoints",
            api=ApiCall("LIST", "EndpointSlice", ns, None, f"kubernetes.io/service-name={component}, polled"),
            args={"component": component, "replicas": replicas},
        ),
    ]


def _apply_steps(topology: Topology, opts: PlanOptions) -> list[Step]:
    ns = opts.namespace
    steps = [
        _apply("Namespace", ns, ns, f"the run's namespace {ns}"),
        _apply("Deployment", ns, "app", f"the app: {topology.app.replicas} pods of {opts.image}"),
        _apply("Service", ns, "app", "the app Service" + (" (NodePort: the entry)" if topology.tier is None else "")),
        *_wait("app", ns, topology.app.replicas),
    ]
    if topology.ingress is not None:
        return steps + _ingress_steps(topology, opts)
    tier = topology.proxy_tier
    if tier is None:
        return steps
    if tier.upstream == "endpoints":
        config = f"the {tier.kind} config, listing the app pods' addresses"
        steps.append(
            Step(
                "discover",
                f"the app pods' ready addresses, for the {tier.kind} config",
                "read_endpoints",
                api=ApiCall("LIST", "EndpointSlice", ns, None, "kubernetes.io/service-name=app"),
            )
        )
    else:
        config = f"the {tier.kind} config, upstream the app Service's DNS name"
    steps += [
        _apply("ConfigMap", ns, "tier-config", config),
        _apply("Deployment", ns, "tier", f"the {tier.kind} tier: {tier.replicas} pods"),
        _apply("Service", ns, "tier", f"the {tier.kind} Service (NodePort: the entry)"),
        *_wait("tier", ns, tier.replicas),
    ]
    if tier.upstream == "endpoints":
        steps.append(
            Step(
                "apply",
                f"watch the app EndpointSlices; on each change re-render the {tier.kind} config, apply it to the "
                "ConfigMap and reload every tier pod through exec",
                "start_reloader",
            )
        )
    return steps


def _ingress_steps(topology: Topology, opts: PlanOptions) -> list[Step]:
    """The ingress-nginx controller's install and the Ingress, each object one step, in the order the manifests
    give; then the controller ready. That the Ingress is served shows later, in the handshake through each node."""
    tier = topology.ingress
    assert tier is not None
    ns = opts.namespace
    objects = ingress_nginx_objects(topology, tier, run_id=opts.run_id, node_port=None)
    steps = [_apply(o["kind"], ns, o["metadata"]["name"], describe_object(o, tier)) for o in objects]
    return steps + _wait("tier", ns, tier.replicas)


def up_steps(topology: Topology, opts: PlanOptions) -> list[Step]:
    """The steps of ``up``, in order."""
    lb = topology.load_balancer
    steps = [Step("preflight", _preflight_text(opts), "preflight")]
    if opts.backend == "kind":
        steps += _cluster_steps(topology, opts)
    else:
        steps.append(
            Step("cluster", f"check that context {opts.context} answers", "check_api", api=ApiCall("GET", "version"))
        )
    steps += _apply_steps(topology, opts)
    entry = entry_service_name(topology)
    if opts.backend == "kubeconfig":
        return [*steps, Step("balancer", "a handshake through your load balancer", "handshake_entry")]
    header = "no header" if lb.proxy_protocol == "none" else f"PROXY {lb.proxy_protocol}"
    access = (
        "127.0.0.1 and the host ports kind maps to each worker's nodePort"
        if opts.node_access == "port-mapping"
        else "each worker's InternalIP"
    )
    return [
        *steps,
        Step("discover", "the workers and their InternalIPs", "discover_nodes", api=ApiCall("LIST", "Node")),
        Step(
            "discover",
            f"the {entry} Service's nodePort",
            "discover_node_port",
            api=ApiCall("GET", "Service", opts.namespace, entry),
        ),
        Step(
            "balancer",
            f"a handshake through every node's NodePort at {access} ({header}, as the balancer sends): every node "
            "programs the Service" + (", the controller serves the Ingress" if topology.ingress is not None else ""),
            "probe_nodes",
        ),
        Step("balancer", f"start the load-balancer simulator ({lb.mode}, {header}) on 127.0.0.1", "start_lb"),
        Step("balancer", "a handshake through the load balancer", "handshake_entry"),
    ]


def _preflight_text(opts: PlanOptions) -> str:
    if opts.backend == "kubeconfig":
        return "kubectl found (for `kubectl describe` in the evidence of a failure)"
    return (
        "docker, kind and kubectl found and their versions supported (`docker --version`, `kind version`, "
        "`kubectl version --client`), the docker daemon answering (`docker info`), "
        "fs.inotify.max_user_watches >= 524288 and max_user_instances >= 512"
    )


def _described(topology: Topology) -> str:
    kinds = "deployments,replicasets,pods,services,endpointslices,configmaps"
    return kinds + (",ingresses" if topology.ingress is not None else "")


def _ingress_evidence(topology: Topology, opts: PlanOptions) -> list[Step]:
    """What the ingress-nginx controller made of the Ingress: the nginx.conf it rendered, and the backends its Lua
    balancer holds (endpoints and affinity settings; ``/dbg`` is the controller image's documented debug tool)."""
    if topology.ingress is None:
        return []
    ns = opts.namespace
    dumps = {
        "ingress-nginx/nginx.conf": ("the nginx.conf the controller rendered", ("cat", "/etc/nginx/nginx.conf")),
        "ingress-nginx/backends.json": ("the controller's balancer backends", ("/dbg", "backends", "all")),
    }
    return [
        Step(
            "evidence",
            what,
            "capture",
            argv=opts.kubectl("exec", "-n", ns, "deployment/tier", "-c", "controller", "--", *argv),
            when="on failure",
            output=output,
        )
        for output, (what, argv) in dumps.items()
    ]


def evidence_steps(topology: Topology, opts: PlanOptions, config: KindConfig | None = None) -> list[Step]:
    """What is collected into ``<run dir>/evidence/`` when something fails."""
    ns, when = opts.namespace, "on failure"
    steps = [
        Step(
            "evidence",
            "every pod's log (and its previous container's)",
            "evidence_logs",
            api=ApiCall("GET", "Pod/log", ns, None, "every pod"),
            when=when,
        ),
        Step("evidence", "the namespace's events", "evidence_events", api=ApiCall("LIST", "Event", ns), when=when),
        Step(
            "evidence",
            "describe the run's objects",
            "capture",
            argv=opts.kubectl("describe", _described(topology), "-n", ns),
            when=when,
            output="describe.txt",
        ),
        Step(
            "evidence",
            "describe the nodes",
            "capture",
            argv=opts.kubectl("describe", "nodes"),
            when=when,
            output="describe-nodes.txt",
        ),
        *_ingress_evidence(topology, opts),
    ]
    if opts.backend != "kind":
        return steps
    dumps = {
        "iptables-save.txt": ("the iptables rules", ("iptables-save",)),
        "nft-ruleset.txt": ("the nftables ruleset", ("nft", "list", "ruleset")),
        "ipvsadm.txt": ("the IPVS services", ("ipvsadm", "-Ln")),
        # ipvsadm may be missing from the node image: the kernel's own listing, and kube-proxy's ClientIP tables.
        "proc-ip_vs.txt": ("the kernel's IPVS table", ("cat", "/proc/net/ip_vs")),
        "xt_recent.txt": (
            "kube-proxy's ClientIP affinity lists (xt_recent)",
            ("sh", "-c", 'for f in /proc/net/xt_recent/*; do echo "== $f"; cat "$f"; done'),
        ),
    }
    config = config or read_kind_config(opts.kind_config)
    for node in config.node_containers(opts.cluster_name):
        for output, (what, argv) in dumps.items():
            steps.append(
                Step(
                    "evidence",
                    f"{what} of node {node}",
                    "capture",
                    argv=("docker", "exec", node, *argv),
                    when=when,
                    output=f"nodes/{node}/{output}",
                )
            )
    steps.append(
        Step(
            "evidence",
            "kind's own logs of every node",
            "capture",
            argv=("kind", "export", "logs", str(opts.run_dir / "evidence" / "kind-logs"), "--name", opts.cluster_name),
            when=when,
            timeout=300.0,
            output="kind-export-logs.txt",
        )
    )
    return steps


def down_steps(topology: Topology, opts: PlanOptions) -> list[Step]:
    """The steps of ``down``: stop what runs on the host, then delete what this run made, unless ``keep``."""
    steps = []
    proxy_tier = topology.proxy_tier
    if proxy_tier is not None and proxy_tier.upstream == "endpoints":
        steps.append(Step("down", "stop watching the EndpointSlices", "stop_reloader"))
    if opts.backend == "kind":
        steps.append(Step("down", "stop the load-balancer simulator", "stop_lb"))
    if opts.keep:
        return steps
    ns = opts.namespace
    if opts.backend == "kubeconfig":
        return [
            *steps,
            *_delete_cluster_scoped(topology, opts, when=""),
            Step(
                "down", f"delete the namespace {ns}", "delete_namespace", api=ApiCall("DELETE", "Namespace", None, ns)
            ),
        ]
    return [
        *steps,
        *_delete_cluster_scoped(topology, opts, when="if the cluster was reused"),
        Step(
            "down",
            f"delete the namespace {ns}",
            "delete_namespace",
            api=ApiCall("DELETE", "Namespace", None, ns),
            when="if the cluster was reused",
        ),
        Step(
            "down",
            f"delete the kind cluster {opts.cluster_name}",
            "delete_cluster",
            argv=("kind", "delete", "cluster", "--name", opts.cluster_name),
            when="if this run created it",
            timeout=300.0,
        ),
    ]


def _delete_cluster_scoped(topology: Topology, opts: PlanOptions, when: str) -> list[Step]:
    """Deleting the namespace leaves the run's cluster-scoped objects (the ingress-nginx tier's ClusterRole and
    binding, IngressClass): delete each by name, in the reverse of the apply order."""
    objects = [o for o in render_manifests(topology, run_id=opts.run_id) if o["kind"] in CLUSTER_SCOPED]
    return [
        Step(
            "down",
            f"delete the {o['kind']} {o['metadata']['name']}",
            "delete_object",
            api=ApiCall("DELETE", o["kind"], None, o["metadata"]["name"]),
            when=when,
            args={"api_version": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"]},
        )
        for o in reversed(objects)
        if o["kind"] != "Namespace"
    ]


def dry_run_plan(
    topology: Topology,
    *,
    cluster_name: str = DEFAULT_CLUSTER_NAME,
    keep: bool = False,
    run_id: str | None = None,
    run_dir: Path | None = None,
    proxy_mode: str = "iptables",
    node_access: NodeAccess = "internal-ip",
) -> list[Step]:
    """Every step of ``up``, of the evidence collection that runs on failure, and of ``down``, in order."""
    run_id = run_id or f"dry-run-{topology.name}"
    opts = PlanOptions(
        run_id=run_id,
        run_dir=run_dir or repo_root() / "reports" / run_id,
        cluster_name=cluster_name,
        kind_config=kind_config_path(proxy_mode),
        keep=keep,
        node_access=node_access,
    )
    return up_steps(topology, opts) + evidence_steps(topology, opts) + down_steps(topology, opts)


def format_plan(steps: Sequence[Step]) -> str:
    return "\n".join(f"{i:2d}. {step}" for i, step in enumerate(steps, start=1))
