"""The kind backend (a kind cluster on this machine) and the kubeconfig backend (an existing cluster).

Public front: ``KindCluster`` and ``KubeconfigCluster`` (the ``Cluster`` interface), ``render_to_dir`` for
``harness render --backend kind``, ``dry_run_plan`` for ``harness up --backend kind --dry-run`` (each ``Step``
prints as one line), ``render_manifests`` and the pinned versions. The Kubernetes client is imported only when a
backend first talks to a cluster, so rendering and planning need neither it nor Docker.

Topologies whose tier is the ingress-nginx controller (``clusters/topologies/ingress-nginx-*.yaml``) run on these
backends only: ``ingress.py`` renders the controller's install (pinned to ``INGRESS_NGINX_VERSION``) and the
Ingress with the topology's affinity annotations, in the run's namespace and labelled like every other object.
"""

from __future__ import annotations

from harness.cluster.kind.backend import KindCluster, KubeconfigCluster
from harness.cluster.kind.config import (
    KIND_VERSION,
    KUBERNETES_VERSION,
    NODE_IMAGE,
    PROXY_MODES,
    kind_config_path,
    render_to_dir,
)
from harness.cluster.kind.ingress import INGRESS_NGINX_IMAGE, INGRESS_NGINX_VERSION
from harness.cluster.kind.manifests import render_manifests
from harness.cluster.kind.plan import Step, dry_run_plan, format_plan
from harness.cluster.kind.preflight import Finding, PreflightError, preflight

__all__ = [
    "INGRESS_NGINX_IMAGE",
    "INGRESS_NGINX_VERSION",
    "KIND_VERSION",
    "KUBERNETES_VERSION",
    "NODE_IMAGE",
    "PROXY_MODES",
    "Finding",
    "KindCluster",
    "KubeconfigCluster",
    "PreflightError",
    "Step",
    "dry_run_plan",
    "format_plan",
    "kind_config_path",
    "preflight",
    "render_manifests",
    "render_to_dir",
]
