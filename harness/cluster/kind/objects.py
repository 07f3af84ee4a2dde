"""The building blocks every manifest of a run is made of: its labels, names and the common object shapes.

Every object a run creates carries the run's labels (``sticky-harness/run-id``, the topology, part-of and
managed-by), so that a person or a reaper can find what a run left; names and label values are derived from the
run id so that they are valid DNS labels. The shapes (Deployment, Service, pod spreading) are shared by the
app, the proxy tiers (``manifests``) and the ingress-nginx controller (``ingress``), so that a rolling restart,
a NodePort or a ClientIP Service behave alike whatever the tier is.
"""

from __future__ import annotations

import re
from typing import Any

from harness.topology import ServiceSpec, Topology

__all__ = [
    "CLUSTER_SCOPED",
    "COMPONENT_LABEL",
    "NAME_LABEL",
    "PART_OF",
    "RUN_LABEL",
    "SERVICE_PORT",
    "TIER_PORT",
    "deployment",
    "label_value",
    "labels",
    "meta",
    "namespace_for",
    "selector",
    "service",
    "spread",
]

PART_OF = "sticky-harness"
RUN_LABEL = "sticky-harness/run-id"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
SERVICE_PORT = 80
# Kinds without a namespace: deleting the run's namespace leaves them, so `down` deletes them one by one.
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"})
TIER_PORT = 8080  # the tier container's port: above 1024, as HAProxy's image runs as an unprivileged user


def label_value(text: str) -> str:
    """``text`` as a valid label value and DNS label: lower case, [a-z0-9-], at most 63 characters."""
    value = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    return value or "run"


def namespace_for(run_id: str) -> str:
    return label_value(run_id)


def labels(topology: Topology, run_id: str, component: str | None = None) -> dict[str, str]:
    found = {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": PART_OF,
        RUN_LABEL: label_value(run_id),
        "sticky-harness/topology": topology.name,
    }
    if component is not None:
        found[NAME_LABEL] = f"sticky-{component}"
        found[COMPONENT_LABEL] = component
    return found


def selector(run_id: str, component: str) -> dict[str, str]:
    return {COMPONENT_LABEL: component, RUN_LABEL: label_value(run_id)}


def meta(name: str, namespace: str | None, object_labels: dict[str, str]) -> dict[str, Any]:
    """Metadata; ``namespace`` None for a cluster-scoped object."""
    found: dict[str, Any] = {"name": name}
    if namespace is not None:
        found["namespace"] = namespace
    found["labels"] = dict(object_labels)
    return found


def spread(pod_selector: dict[str, str], *, strict: bool = False) -> list[dict[str, Any]]:
    # Spread the replicas over the nodes, as the local backend places pod i on node i % nodes. ``strict`` for pods
    # behind an externalTrafficPolicy Local NodePort: a node left without one black-holes what the balancer sends it.
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule" if strict else "ScheduleAnyway",
            "nodeTaintsPolicy": "Honor",  # the tainted control plane takes no pods: leave it out of the count
            "labelSelector": {"matchLabels": dict(pod_selector)},
        }
    ]


def deployment(
    name: str,
    namespace: str,
    object_labels: dict[str, str],
    pod_selector: dict[str, str],
    replicas: int,
    pod: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, namespace, object_labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(pod_selector)},
            # A rolling restart replaces one pod at a time, each new pod ready before an old one goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": dict(object_labels)}, "spec": pod},
        },
    }


def service(
    name: str,
    namespace: str,
    object_labels: dict[str, str],
    pod_selector: dict[str, str],
    spec: ServiceSpec,
    *,
    node_port: bool,
    fixed_node_port: int | None,
) -> dict[str, Any]:
    """A Service on port 80 to the pods' port named ``http``. The API refuses ``sessionAffinityConfig`` with
    sessionAffinity None, and ``externalTrafficPolicy`` on a ClusterIP Service: each is set only where allowed."""
    port: dict[str, Any] = {"name": "http", "protocol": "TCP", "port": SERVICE_PORT, "targetPort": "http"}
    body: dict[str, Any] = {
        "type": "NodePort" if node_port else "ClusterIP",
        "selector": dict(pod_selector),
        "ports": [port],
        "sessionAffinity": spec.session_affinity.value,
    }
    if spec.session_affinity.value == "ClientIP":
        body["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": spec.timeout_seconds}}
    if node_port:
        body["externalTrafficPolicy"] = spec.external_traffic_policy.value
        if fixed_node_port is not None:
            port["nodePort"] = fixed_node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace, object_labels), "spec": body}
