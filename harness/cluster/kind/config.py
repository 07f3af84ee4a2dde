"""The kind cluster configs (``clusters/kind/*.yaml``), the pinned versions, and ``harness render --backend kind``.

A kind config decides what the harness can do with the cluster: how many workers the load balancer can spread over,
which worker is ``node-0`` (a ``sticky-harness/node`` label, so a node's name in a topology's events means the same
node on every backend), which host ports reach each worker's NodePort where node addresses cannot be reached, and
the kube-proxy mode. So the backend reads the config itself, checked against kind's v1alpha4 fields, rather than
trusting what a cluster of that name turns out to be. Versions are pinned here in one place: kind, the node image
(whose Kubernetes version the manifests are validated against), and through them the kubectl skew preflight allows;
the ingress-nginx controller's is pinned next to its manifests (``ingress.py``), to a release that supports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.cluster.kind.manifests import (
    ENTRY_NODE_PORT,
    namespace_for,
    render_manifests,
    render_tier_config,
    tier_files,
    tier_servers,
    write_manifests,
)
from harness.errors import UsageError
from harness.topology import Topology

__all__ = [
    "DEFAULT_CLUSTER_NAME",
    "KIND_VERSION",
    "KUBERNETES_VERSION",
    "NODE_IMAGE",
    "NODE_LABEL",
    "PROXY_MODES",
    "KindConfig",
    "NodeAccess",
    "kind_config_path",
    "read_kind_config",
    "render_to_dir",
    "repo_root",
]

KIND_VERSION = "v0.25.0"
KUBERNETES_VERSION = "v1.31.2"  # kind v0.25.0's default node image; manifests are validated against 1.31
NODE_IMAGE = f"kindest/node:{KUBERNETES_VERSION}"
DEFAULT_CLUSTER_NAME = "sticky-harness"
PROXY_MODES = ("iptables", "nftables", "ipvs")
NodeAccess = Literal["internal-ip", "port-mapping"]

# The v1alpha4 fields kind accepts (sigs.k8s.io/kind pkg/apis/config/v1alpha4/types.go).
_CLUSTER_FIELDS = {
    "kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig", "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902", "containerdConfigPatches", "containerdConfigPatchesJSON6902",
}  # fmt: skip
_NODE_FIELDS = {
    "role", "image", "labels", "extraMounts", "extraPortMappings", "gpus", "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
}  # fmt: skip
_NETWORKING_FIELDS = {
    "ipFamily", "apiServerPort", "apiServerAddress", "podSubnet", "serviceSubnet", "disableDefaultCNI",
    "kubeProxyMode", "dnsSearch",
}  # fmt: skip
_PORT_MAPPING_FIELDS = {"containerPort", "hostPort", "listenAddress", "protocol"}
NODE_LABEL = "sticky-harness/node"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def kind_config_path(proxy_mode: str = "iptables") -> Path:
    if proxy_mode not in PROXY_MODES:
        raise UsageError(f"kube-proxy mode {proxy_mode!r}: use one of {', '.join(PROXY_MODES)}")
    name = "cluster.yaml" if proxy_mode == "iptables" else f"cluster-{proxy_mode}.yaml"
    return repo_root() / "clusters" / "kind" / name


@dataclass(frozen=True, slots=True)
class KindConfig:
    """What the backend needs from a kind config: the workers (by their sticky-harness/node label) and the host
    ports mapped to their NodePort, the kube-proxy mode and the node image."""

    path: Path
    proxy_mode: str
    image: str
    workers: tuple[str, ...]  # node-0, node-1, ... in config order
    host_ports: dict[str, int]  # worker label -> host port mapped to the entry nodePort

    def node_containers(self, cluster_name: str) -> list[str]:
        """The node containers kind creates: NAME-control-plane, NAME-worker, NAME-worker2, ..."""
        return [f"{cluster_name}-control-plane"] + [
            f"{cluster_name}-worker{'' if i == 0 else i + 1}" for i in range(len(self.workers))
        ]


def _unknown(fields: dict[str, Any], allowed: set[str], where: str, path: Path) -> None:
    extra = sorted(set(fields) - allowed)
    if extra:
        raise UsageError(f"{path}: {where}: unknown kind v1alpha4 field(s) {', '.join(extra)}")


def read_kind_config(path: Path) -> KindConfig:
    """Read and check a kind config against the v1alpha4 fields; every worker needs a sticky-harness/node label."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the kind config {path}: {exc}") from exc
    if (
        not isinstance(data, dict)
        or data.get("kind") != "Cluster"
        or data.get("apiVersion") != "kind.x-k8s.io/v1alpha4"
    ):
        raise UsageError(f"{path}: not a kind config (kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4)")
    _unknown(data, _CLUSTER_FIELDS, "top level", path)
    networking = data.get("networking") or {}
    _unknown(networking, _NETWORKING_FIELDS, "networking", path)
    mode = str(networking.get("kubeProxyMode", "iptables"))
    if mode not in (*PROXY_MODES, "none"):
        raise UsageError(f"{path}: networking.kubeProxyMode {mode!r}: use one of {', '.join(PROXY_MODES)}")
    workers: list[str] = []
    host_ports: dict[str, int] = {}
    images = set()
    for index, node in enumerate(data.get("nodes") or []):
        _unknown(node, _NODE_FIELDS, f"nodes[{index}]", path)
        images.add(str(node.get("image", "")))
        if node.get("role") != "worker":
            continue
        label = (node.get("labels") or {}).get(NODE_LABEL)
        if not label:
            raise UsageError(f"{path}: nodes[{index}] (a worker) needs the label {NODE_LABEL}: node-N")
        workers.append(str(label))
        for mapping in node.get("extraPortMappings") or []:
            _unknown(mapping, _PORT_MAPPING_FIELDS, f"nodes[{index}].extraPortMappings", path)
            host_ports[str(label)] = int(mapping["hostPort"])
    if not workers:
        raise UsageError(f"{path}: no worker nodes: the load balancer needs nodes to send to")
    if len(images) != 1:
        raise UsageError(f"{path}: every node should use one pinned image, found {sorted(images)}")
    return KindConfig(path, mode, images.pop(), tuple(workers), host_ports)


def render_to_dir(
    topology: Topology,
    out_dir: Path,
    *,
    run_id: str | None = None,
    proxy_mode: str = "iptables",
    node_access: NodeAccess = "internal-ip",
) -> list[Path]:
    """``harness render --backend kind``: the kind config (``kind-config.yaml``), every manifest (one file each
    and ``manifests.yaml``), and the tier's config alone (``nginx.conf`` / ``haproxy.cfg``, for ``nginx -t``)."""
    run_id = run_id or f"sticky-{topology.name}"
    source = kind_config_path(proxy_mode)
    read_kind_config(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind_config = out_dir / "kind-config.yaml"
    kind_config.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    objects = render_manifests(
        topology, run_id=run_id, node_port=ENTRY_NODE_PORT if node_access == "port-mapping" else None
    )
    written = [kind_config, *write_manifests(objects, out_dir)]
    if topology.proxy_tier is not None:  # ingress-nginx has no config file of its own: its ConfigMap is a manifest
        config = out_dir / tier_files(topology.proxy_tier.kind).config_key
        config.write_text(render_tier_config(topology, tier_servers(topology, namespace_for(run_id))), encoding="utf-8")
        written.append(config)
    return written
