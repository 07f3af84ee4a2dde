"""A topology as Kubernetes manifests: what the kind and kubeconfig backends apply, and what ``harness render`` writes.

The manifests are plain dicts, rendered from the same topology as the local backend, so that both backends test the
same chain: a Namespace named after the run id; the app Deployment (the reference app's image, ``POD_NAME`` from
the downward API, a readiness probe on the Engine.IO handshake) and its Service; and, with a tier, the tier's
ConfigMap, Deployment and NodePort Service, or for an ``ingress-nginx`` tier the controller's install and an
Ingress for the app Service (``ingress.py``). Each Service carries the topology's ``sessionAffinity`` (with
``sessionAffinityConfig.clientIP.timeoutSeconds`` when it is ClientIP: the API refuses that field with None) and,
on a NodePort, its ``externalTrafficPolicy`` (the API refuses it on a ClusterIP Service).

The tier's config is the very file the local backend runs (``render_template`` of ``clusters/templates``), with
the local-only variables (prefix, pid_path, error_log, proxy_bind, listen_addr) empty, as a pod has its own
filesystem and address. One ConfigMap serves every tier pod, so the pod name in the ``x-tier-pod`` header comes
from the proxy itself (nginx ``$hostname``, HAProxy ``%[hostname]``: a pod's hostname is its name).

Upstreams: with ``upstream: service`` the config names the app Service's DNS name, which nginx resolves once at
start (the ClusterIP, so kube-proxy on the tier pod's node picks the app pod, as in the seed recipe). With
``upstream: endpoints`` it lists the app pods' addresses. Pod addresses change, so the harness plays the config
reloader that such setups run in production: it watches the app Service's EndpointSlices, and on every change
re-renders the config, applies it to the ConfigMap (so that new tier pods start with it) and writes it into every
running tier pod through the API's exec, where the proxy checks it and reloads (``nginx -s reload``; HAProxy's
master on SIGUSR2). The ConfigMap is therefore mounted read-only and copied by an init container into an
``emptyDir`` that the proxy reads: a ConfigMap volume reaches running pods only after the kubelet's next sync,
up to a minute later, while an exec takes effect at once. Until the app pods exist (``harness render``) the
endpoints are placeholders from 192.0.2.0/24 (TEST-NET-1), one per planned replica, so the file still passes
``nginx -t``; the ConfigMap's annotation says so.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.cluster.kind.ingress import ingress_nginx_objects
from harness.cluster.kind.objects import (
    PART_OF,
    RUN_LABEL,
    SERVICE_PORT,
    TIER_PORT,
    deployment,
    label_value,
    labels,
    meta,
    namespace_for,
    selector,
    service,
    spread,
)
from harness.cluster.local.tier import render_template
from harness.topology import Tier, Topology

__all__ = [
    "APP_IMAGE",
    "APP_PORT",
    "ENTRY_NODE_PORT",
    "PART_OF",
    "RUN_LABEL",
    "SERVICE_PORT",
    "TIER_IMAGES",
    "TIER_PORT",
    "Endpoint",
    "TierFiles",
    "app_service_host",
    "entry_service_name",
    "label_value",
    "namespace_for",
    "render_manifests",
    "render_tier_config",
    "tier_files",
    "tier_reload_argv",
    "tier_servers",
    "write_manifests",
]

APP_IMAGE = "sticky-harness-app:dev"
APP_PORT = 8080  # the app container's port (the reference app reads PORT)
ENTRY_NODE_PORT = 30080  # the entry Service's nodePort when nodes are reached through kind's extraPortMappings
# Pulled by the nodes themselves: `kind load` of a multi-platform image fails under Docker's containerd image store
# (kind issue 3795), and these are public.
TIER_IMAGES = {"nginx": "nginx:1.27-alpine", "haproxy": "haproxy:3.0-alpine"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready endpoint of a Service, as its EndpointSlices list it."""

    pod: str
    ip: str
    node: str = ""


@dataclass(frozen=True, slots=True)
class TierFiles:
    """Where a kind of proxy keeps its config in a tier pod, and how it runs."""

    config_key: str  # the ConfigMap key and file name
    config_dir: str  # the ConfigMap, mounted read-only
    run_dir: str  # the emptyDir the proxy reads its config from
    pod_name: str  # what the template's pod_name becomes: the proxy's own variable for its hostname
    command: tuple[str, ...]
    check: str  # shell: check the config file "$NEW"
    reload: str  # shell: make the running proxy read its config again

    @property
    def config_path(self) -> str:
        return f"{self.run_dir}/{self.config_key}"


_TIER_FILES = {
    "nginx": TierFiles(
        config_key="nginx.conf",
        config_dir="/etc/sticky-harness/config",
        run_dir="/etc/sticky-harness/run",
        pod_name="$hostname",
        command=("nginx", "-c", "/etc/sticky-harness/run/nginx.conf"),  # the config says `daemon off`
        check='nginx -t -q -c "$NEW"',
        reload="nginx -s reload -c /etc/sticky-harness/run/nginx.conf",
    ),
    "haproxy": TierFiles(
        config_key="haproxy.cfg",
        config_dir="/usr/local/etc/sticky-harness/config",
        run_dir="/usr/local/etc/sticky-harness/run",
        pod_name="%[hostname]",
        command=("haproxy", "-W", "-db", "-f", "/usr/local/etc/sticky-harness/run/haproxy.cfg"),  # master = PID 1
        check='haproxy -c -q -f "$NEW"',
        reload="kill -USR2 1",
    ),
}


def tier_files(kind: str) -> TierFiles:
    return _TIER_FILES[kind]


def app_service_host(namespace: str) -> str:
    return f"app.{namespace}.svc.cluster.local"


def entry_service_name(topology: Topology) -> str:
    """The Service the load balancer targets through every node's NodePort."""
    return "tier" if topology.tier is not None else "app"


def tier_servers(
    topology: Topology, namespace: str, endpoints: Sequence[Endpoint] | None = None
) -> list[tuple[str, str]]:
    """The tier's upstreams as (name, "host:port"): the app Service's DNS name, or the app pods' addresses
    (sorted by pod name, so that every tier pod builds the same hash ring); placeholders before pods exist."""
    tier = topology.proxy_tier
    assert tier is not None, "only nginx and HAProxy tiers list upstreams"
    if tier.upstream == "service":
        return [("app", f"{app_service_host(namespace)}:{SERVICE_PORT}")]
    if endpoints is None:
        return [(f"app-placeholder-{i}", f"192.0.2.{i + 1}:{APP_PORT}") for i in range(topology.app.replicas)]
    return [(e.pod, f"{e.ip}:{APP_PORT}") for e in sorted(endpoints, key=lambda e: e.pod)]


def render_tier_config(topology: Topology, servers: Sequence[tuple[str, str]]) -> str:
    """The tier config for ``servers``: the template the local backend runs, without its local-only variables."""
    tier = topology.proxy_tier
    assert tier is not None, "only nginx and HAProxy tiers have a config template"
    files = tier_files(tier.kind)
    return render_template(
        tier.template,
        pod_name=files.pod_name,
        listen_addr="",
        listen_port=TIER_PORT,
        proxy_protocol=tier.reads_proxy_protocol(topology.load_balancer.proxy_protocol),
        upstreams=[address for _, address in servers],
        servers=[{"name": name, "address": address} for name, address in servers],
        prefix="",
        pid_path="",
        error_log="",
        proxy_bind="",
    )


def tier_reload_argv(kind: str, config: str) -> list[str]:
    """A command for the API's exec in a running tier pod: write ``config`` next to the live one, have the proxy
    check it, swap it in, reload. The config travels base64-encoded as an argument, so no quoting can break it."""
    files = tier_files(kind)
    script = (
        f'set -e; NEW={files.config_path}.new; printf %s "$0" | base64 -d > "$NEW"; {files.check}; '
        f'mv "$NEW" {files.config_path}; {files.reload}'
    )
    return ["sh", "-c", script, base64.b64encode(config.encode()).decode("ascii")]


# -- the manifests ---------------------------------------------------------------------------------------------


def _app_objects(
    topology: Topology, run_id: str, namespace: str, image: str, pull_policy: str, node_port: int | None
) -> list[dict[str, Any]]:
    app_labels = labels(topology, run_id, "app")
    app_selector = selector(run_id, "app")
    container = {
        "name": "app",
        "image": image,
        "imagePullPolicy": pull_policy,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "PORT", "value": str(APP_PORT)},
            {"name": "PING_INTERVAL", "value": f"{topology.app.ping_interval:g}"},
            {"name": "PING_TIMEOUT", "value": f"{topology.app.ping_timeout:g}"},
        ],
        "ports": [{"name": "http", "containerPort": APP_PORT, "protocol": "TCP"}],
        # Ready once it answers an Engine.IO handshake, as a client would see it. Each probe opens a session that
        # the app drops after pingInterval + pingTimeout; clients' records, not server counts, are what is judged.
        "readinessProbe": {
            "httpGet": {"path": "/socket.io/?EIO=4&transport=polling", "port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    local_entry = topology.tier is None and topology.app.service.external_traffic_policy.value == "Local"
    pod = {"containers": [container], "topologySpreadConstraints": spread(app_selector, strict=local_entry)}
    app_service = service(
        "app",
        namespace,
        app_labels,
        app_selector,
        topology.app.service,
        node_port=topology.tier is None,
        fixed_node_port=node_port if topology.tier is None else None,
    )
    return [deployment("app", namespace, app_labels, app_selector, topology.app.replicas, pod), app_service]


def _tier_objects(
    topology: Topology, tier: Tier, run_id: str, namespace: str, config: str, placeholder: bool, node_port: int | None
) -> list[dict[str, Any]]:
    tier_labels = labels(topology, run_id, "tier")
    tier_selector = selector(run_id, "tier")
    files = tier_files(tier.kind)
    image = TIER_IMAGES[tier.kind]
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta("tier-config", namespace, tier_labels),
        "data": {files.config_key: config},
    }
    if placeholder:
        config_map["metadata"]["annotations"] = {
            "sticky-harness/upstreams": "placeholders (192.0.2.0/24): the harness writes the app pods' addresses "
            "from the EndpointSlices before it applies this"
        }

    def mounts() -> list[dict[str, Any]]:
        return [
            {"name": "config", "mountPath": files.config_dir, "readOnly": True},
            {"name": "run", "mountPath": files.run_dir},
        ]

    pod = {
        "initContainers": [
            {
                "name": "copy-config",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["cp", f"{files.config_dir}/{files.config_key}", files.config_path],
                "volumeMounts": mounts(),
            }
        ],
        "containers": [
            {
                "name": tier.kind,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": list(files.command),
                "ports": [{"name": "http", "containerPort": TIER_PORT, "protocol": "TCP"}],
                # A TCP check: with PROXY protocol on, an HTTP probe without a header would be refused.
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2, "failureThreshold": 2},
                "volumeMounts": mounts(),
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "tier-config"}},
            {"name": "run", "emptyDir": {}},
        ],
        "topologySpreadConstraints": spread(tier_selector),
    }
    tier_service = service(
        "tier", namespace, tier_labels, tier_selector, tier.service, node_port=True, fixed_node_port=node_port
    )
    return [config_map, deployment("tier", namespace, tier_labels, tier_selector, tier.replicas, pod), tier_service]


def render_manifests(
    topology: Topology,
    *,
    run_id: str,
    app_endpoints: Sequence[Endpoint] | None = None,
    image: str = APP_IMAGE,
    pull_policy: str = "Never",
    node_port: int | None = None,
) -> list[dict[str, Any]]:
    """Every object of a topology, in the order to apply them. ``app_endpoints``: the app pods' ready endpoints,
    for a tier with ``upstream: endpoints`` (placeholders when None). ``node_port``: pin the entry Service's
    nodePort (for kind's extraPortMappings); None lets the API choose. ``pull_policy`` Never suits images loaded
    into kind nodes (a missing image fails at once instead of trying a registry)."""
    namespace = namespace_for(run_id)
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels(topology, run_id)}}
    ]
    objects += _app_objects(topology, run_id, namespace, image, pull_policy, node_port)
    tier = topology.proxy_tier
    if tier is not None:
        config = render_tier_config(topology, tier_servers(topology, namespace, app_endpoints))
        placeholder = tier.upstream == "endpoints" and app_endpoints is None
        objects += _tier_objects(topology, tier, run_id, namespace, config, placeholder, node_port)
    elif topology.ingress is not None:
        objects += ingress_nginx_objects(topology, topology.ingress, run_id=run_id, node_port=node_port)
    return objects


def write_manifests(objects: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One YAML file per object (``NN-kind-name.yaml``) and ``manifests.yaml`` with all of them, in apply order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, obj in enumerate(objects, start=1):
        path = out_dir / f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
        written.append(path)
    combined = out_dir / "manifests.yaml"
    combined.write_text(yaml.safe_dump_all(objects, sort_keys=False), encoding="utf-8")
    written.append(combined)
    return written
