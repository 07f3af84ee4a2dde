"""The ingress-nginx controller as a topology's tier, for the kind and kubeconfig backends.

ingress-nginx is the controller most users put behind their load balancer, so its stickiness is judged as it ships:
its pods read the PROXY header themselves (ConfigMap ``use-proxy-protocol``, which also points nginx's real-IP
module at the header, so that ``$remote_addr`` is the client and not the load balancer or a node), and they balance
over the app Service's endpoints themselves, not through kube-proxy, as the Ingress's annotations say: cookie
affinity (``affinity``, ``affinity-mode``, ``session-cookie-name``, ``session-cookie-max-age``) or consistent
hashing (``upstream-hash-by``). It is a Kubernetes controller, not a process, so the local backend has no
counterpart and refuses such topologies.

The install is the least the controller needs, scoped to the run, so that runs can share a cluster with each
other and with an ingress-nginx the cluster already has. In the run's namespace: a ServiceAccount; a Role for what
it reads and writes there (Ingresses, Services, EndpointSlices, Secrets, its leader-election Lease, events); the
controller ConfigMap; the controller Deployment (``tier``), which watches only that namespace
(``--watch-namespace``) and listens on port 8080 like the other tiers' pods; its NodePort Service
(``tier``, the entry, with the topology's externalTrafficPolicy); and the Ingress for the app Service.
Cluster-wide, named after the run: an IngressClass whose controller value names the run (so that no other
controller takes this Ingress, and this controller takes no other), and a ClusterRole and binding for what exists
only cluster-wide (IngressClasses, nodes). Deleting the namespace leaves cluster-scoped objects behind, so ``down``
deletes them by name, and they carry the run's labels like every other object.

The admission webhook is left out on purpose: it only validates Ingress objects as they are written, which helps
people who edit them by hand; the harness renders its one Ingress, and the webhook would cost a certificate Job, a
cluster-wide ValidatingWebhookConfiguration, and an exposed admission endpoint (the path of CVE-2025-1974).

The controller is pinned to one release (``INGRESS_NGINX_VERSION``, by digest), one whose supported Kubernetes
versions include the pinned node image's.
"""

from __future__ import annotations

from typing import Any

from harness.cluster.kind.objects import (
    SERVICE_PORT,
    TIER_PORT,
    deployment,
    labels,
    meta,
    namespace_for,
    selector,
    service,
    spread,
)
from harness.topology import IngressNginx, Topology

__all__ = [
    "CONFIGMAP_NAME",
    "DEFAULT_COOKIE",
    "INGRESS_NGINX_IMAGE",
    "INGRESS_NGINX_VERSION",
    "controller_class",
    "controller_config",
    "describe_object",
    "ingress_annotations",
    "ingress_class_name",
    "ingress_nginx_objects",
]

# Supported on Kubernetes 1.28 to 1.32 (ingress-nginx's README), so on the pinned node image's 1.31; the digest is
# the release's own (changelog/controller-1.12.8.md). Change both together.
INGRESS_NGINX_VERSION = "v1.12.8"
_DIGEST = "sha256:8f8343060688fb2a85752b7345a988d0d3c890d774e18e80b9e8730756e5b530"
INGRESS_NGINX_IMAGE = f"registry.k8s.io/ingress-nginx/controller:{INGRESS_NGINX_VERSION}@{_DIGEST}"

ANNOTATION = "nginx.ingress.kubernetes.io/"
DEFAULT_COOKIE = "INGRESSCOOKIE"  # ingress-nginx's default session-cookie-name
CONFIGMAP_NAME = "ingress-nginx-controller"
SERVICE_ACCOUNT = "ingress-nginx"
ELECTION_ID = "ingress-nginx-leader"
HTTPS_PORT = 8443  # unused (no TLS here), but the controller listens on it: moved off 443 like http off 80
HEALTHZ_PORT = 10254


def _cluster_name(run_id: str) -> str:
    return f"sticky-ingress-nginx-{namespace_for(run_id)}"


def ingress_class_name(run_id: str) -> str:
    """The run's IngressClass (cluster-scoped, so named after the run)."""
    return _cluster_name(run_id)


def controller_class(run_id: str) -> str:
    """The IngressClass's controller value, which this run's controller alone claims (``--controller-class``)."""
    return f"k8s.io/ingress-nginx-{namespace_for(run_id)}"


def controller_config(topology: Topology) -> dict[str, str]:
    """The controller ConfigMap's data."""
    app = topology.app
    return {
        # Every connection must then start with a PROXY header, and $remote_addr is the address it carries.
        "use-proxy-protocol": "true" if topology.load_balancer.proxy_protocol != "none" else "false",
        # Engine.IO long-polls last up to pingInterval + pingTimeout (45 s by default): nginx must wait longer than
        # that (the default is 60 s), as the nginx tier's templates do.
        "proxy-read-timeout": f"{int(app.ping_interval + app.ping_timeout) + 30}",
        "proxy-send-timeout": f"{int(app.ping_interval + app.ping_timeout) + 30}",
        # Old workers finish before the kubelet's kill at terminationGracePeriodSeconds (30 s).
        "worker-shutdown-timeout": "25s",
    }


def ingress_annotations(tier: IngressNginx) -> dict[str, str]:
    """The Ingress's annotations for the tier's affinity (none: no annotation, ingress-nginx's round robin)."""
    if tier.affinity == "cookie":
        found = {
            f"{ANNOTATION}affinity": "cookie",
            f"{ANNOTATION}affinity-mode": tier.mode,
            f"{ANNOTATION}session-cookie-name": tier.cookie_name or DEFAULT_COOKIE,
        }
        if tier.cookie_max_age is not None:
            found[f"{ANNOTATION}session-cookie-max-age"] = str(round(tier.cookie_max_age))
        return found
    if tier.affinity == "hash":
        assert tier.hash_by is not None  # the model refuses hash without hash_by
        return {f"{ANNOTATION}upstream-hash-by": tier.hash_by}
    return {}


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names is not None:
        rule["resourceNames"] = names
    return rule


def _role_rules() -> list[dict[str, Any]]:
    """The namespaced rules of ingress-nginx's Helm chart (controller-role.yaml), with the Lease for leader election
    (the controller elects through Leases only since v1.9)."""
    read = ["get", "list", "watch"]
    return [
        _rule([""], ["namespaces"], ["get"]),
        _rule([""], ["configmaps", "pods", "secrets", "endpoints"], read),
        _rule([""], ["services"], read),
        _rule(["networking.k8s.io"], ["ingresses"], read),
        _rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
        _rule(["networking.k8s.io"], ["ingressclasses"], read),
        _rule(["coordination.k8s.io"], ["leases"], ["get", "update"], [ELECTION_ID]),
        _rule(["coordination.k8s.io"], ["leases"], ["create"]),
        _rule([""], ["events"], ["create", "patch"]),
        _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch", "get"]),
    ]


def _cluster_rules(namespace: str) -> list[dict[str, Any]]:
    """What only a ClusterRole can grant. The chart's ClusterRole also lists namespaced objects cluster-wide; a
    controller that watches one namespace (``--watch-namespace``) reads them through the Role instead."""
    return [
        _rule(["networking.k8s.io"], ["ingressclasses"], ["get", "list", "watch"]),
        _rule([""], ["nodes"], ["get", "list", "watch"]),
        _rule([""], ["namespaces"], ["get"], [namespace]),
    ]


def _controller_pod(tier: IngressNginx, run_id: str) -> dict[str, Any]:
    args = [
        "/nginx-ingress-controller",
        f"--election-id={ELECTION_ID}",
        f"--controller-class={controller_class(run_id)}",
        f"--ingress-class={ingress_class_name(run_id)}",
        f"--configmap=$(POD_NAMESPACE)/{CONFIGMAP_NAME}",
        "--watch-namespace=$(POD_NAMESPACE)",
        f"--http-port={TIER_PORT}",
        f"--https-port={HTTPS_PORT}",
        "--update-status=false",  # nothing reads the Ingress's status; it would have the controller look up nodes
        "--enable-metrics=false",
        # no --validating-webhook: the admission webhook is disabled (see the module's docstring)
    ]
    healthz = {"path": "/healthz", "port": HEALTHZ_PORT, "scheme": "HTTP"}
    container = {
        "name": "controller",
        "image": INGRESS_NGINX_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "LD_PRELOAD", "value": "/usr/local/lib/libmimalloc.so"},
        ],
        "ports": [{"name": "http", "containerPort": TIER_PORT, "protocol": "TCP"}],
        # Not through nginx: /healthz on the controller's own port needs no PROXY header.
        "readinessProbe": {
            "httpGet": healthz,
            "initialDelaySeconds": 5,
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": dict(healthz),
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "failureThreshold": 5,
        },
        "lifecycle": {"preStop": {"exec": {"command": ["/wait-shutdown"]}}},
        # The chart's: www-data (uid 101, gid 82 in the image). The image's binaries carry the file capability
        # cap_net_bind_service, and the kernel refuses to execute them if it is outside the bounding set: so it stays
        # in, though the ports here are above 1024.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 101,
            "runAsGroup": 82,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "seccompProfile": {"type": "RuntimeDefault"},
            "readOnlyRootFilesystem": False,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "90Mi"}},
    }
    return {
        "serviceAccountName": SERVICE_ACCOUNT,
        # The chart's 300 s would make a rolling restart of the tier take minutes; the workers stop within 25 s.
        "terminationGracePeriodSeconds": 30,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "containers": [container],
        "topologySpreadConstraints": spread(selector(run_id, "tier")),
    }


def _ingress(tier: IngressNginx, run_id: str, tier_labels: dict[str, str]) -> dict[str, Any]:
    metadata = meta("app", namespace_for(run_id), tier_labels)
    metadata["annotations"] = ingress_annotations(tier)
    backend = {"service": {"name": "app", "port": {"number": SERVICE_PORT}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {
            "ingressClassName": ingress_class_name(run_id),
            # No host: every Host header matches (clients reach the nodes by address).
            "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
        },
    }


def ingress_nginx_objects(
    topology: Topology, tier: IngressNginx, *, run_id: str, node_port: int | None
) -> list[dict[str, Any]]:
    """The controller's install and the Ingress, in the order to apply them: permissions and configuration first,
    the Ingress before the controller (its first configuration then routes to the app), the entry Service last."""
    namespace = namespace_for(run_id)
    tier_labels = labels(topology, run_id, "tier")
    cluster_name = _cluster_name(run_id)
    pods = selector(run_id, "tier")
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]
    rbac = "rbac.authorization.k8s.io"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(SERVICE_ACCOUNT, namespace, tier_labels)},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": meta("ingress-nginx", namespace, tier_labels),
            "rules": _role_rules(),
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": meta("ingress-nginx", namespace, tier_labels),
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "ingress-nginx"},
            "subjects": subject,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": meta(cluster_name, None, tier_labels),
            "rules": _cluster_rules(namespace),
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(cluster_name, None, tier_labels),
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": cluster_name},
            "subjects": subject,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(CONFIGMAP_NAME, namespace, tier_labels),
            "data": controller_config(topology),
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": meta(ingress_class_name(run_id), None, tier_labels),
            "spec": {"controller": controller_class(run_id)},
        },
        _ingress(tier, run_id, tier_labels),
        deployment("tier", namespace, tier_labels, pods, tier.replicas, _controller_pod(tier, run_id)),
        service("tier", namespace, tier_labels, pods, tier.service, node_port=True, fixed_node_port=node_port),
    ]


def _affinity_text(tier: IngressNginx) -> str:
    if tier.affinity == "cookie":
        return f"cookie affinity, affinity-mode {tier.mode}, cookie {tier.cookie_name or DEFAULT_COOKIE}"
    if tier.affinity == "hash":
        return f"upstream-hash-by {tier.hash_by}"
    return "no affinity: round robin"


def describe_object(obj: dict[str, Any], tier: IngressNginx) -> str:
    """One line for the plan: what an object of ``ingress_nginx_objects`` is for."""
    kind = obj["kind"]
    proxy_protocol = obj.get("data", {}).get("use-proxy-protocol")
    texts = {
        "ServiceAccount": "the ingress-nginx controller's ServiceAccount",
        "Role": "what the controller reads and writes in the run's namespace",
        "RoleBinding": "the controller's Role, to its ServiceAccount",
        "ClusterRole": "what the controller reads cluster-wide (IngressClasses, nodes)",
        "ClusterRoleBinding": "the controller's ClusterRole, to its ServiceAccount",
        "ConfigMap": f"the controller's ConfigMap (use-proxy-protocol: {proxy_protocol})",
        "IngressClass": f"the run's IngressClass, for controller {obj.get('spec', {}).get('controller')}",
        "Ingress": f"the Ingress for the app Service ({_affinity_text(tier)})",
        "Deployment": f"the ingress-nginx controller {INGRESS_NGINX_VERSION}: {tier.replicas} pods",
        "Service": "the ingress-nginx controller Service (NodePort: the entry)",
    }
    return texts.get(kind, f"{kind} {obj['metadata']['name']}")
