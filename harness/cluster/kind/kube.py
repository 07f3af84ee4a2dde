"""The Kubernetes API as the kind and kubeconfig backends use it: a dozen calls behind one small interface.

The official client (``kubernetes`` on PyPI) is untyped and large, and its objects change shape between releases.
So it is imported lazily, only here, and everything it returns is turned into plain dicts in the API's own
camelCase form (what ``kubectl get -o json`` shows), which the pure functions below read: whether a rollout is
done, which endpoints are ready, which node is which. The backend talks to ``KubeOps``, so its tests use a fake,
and an error from the API becomes a ``KubeError`` that names the call, the answer, and what to check.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.cluster.kind.manifests import Endpoint
from harness.errors import HarnessError, SetupError

__all__ = [
    "FIELD_MANAGER",
    "Kube",
    "KubeError",
    "KubeOps",
    "deployment_done",
    "nodes_by_label",
    "pod_ready",
    "ready_endpoints",
]

log = logging.getLogger(__name__)

FIELD_MANAGER = "sticky-harness"
_MERGE_PATCH = "application/merge-patch+json"


class KubeError(HarnessError):
    """A call to the Kubernetes API failed; the message names the call and the API's answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeOps(Protocol):
    def version(self) -> str: ...
    def apply(self, obj: dict[str, Any]) -> None: ...
    def deployment(self, namespace: str, name: str) -> dict[str, Any]: ...
    def scale(self, namespace: str, name: str, replicas: int) -> None: ...
    def restart(self, namespace: str, name: str, stamp: str) -> None: ...
    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None: ...
    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def service(self, namespace: str, name: str) -> dict[str, Any]: ...
    def exec(
        self, namespace: str, pod: str, container: str, argv: Sequence[str], timeout: float
    ) -> tuple[int, str]: ...
    def pod_log(self, namespace: str, pod: str, container: str, previous: bool) -> str: ...
    def events(self, namespace: str) -> list[dict[str, Any]]: ...
    def delete_namespace(self, name: str) -> None: ...
    def delete(self, api_version: str, kind: str, name: str) -> None: ...


# -- reading what the API returns ---------------------------------------------------------------------------------


def deployment_done(deployment: dict[str, Any], replicas: int) -> bool:
    """A rollout is complete: the controller saw the latest spec, and exactly ``replicas`` pods exist, all of
    the new template and all ready (old pods of a rolling restart are gone)."""
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    return bool(
        status.get("observedGeneration", 0) >= meta.get("generation", 1)
        and status.get("replicas", 0) == replicas
        and status.get("updatedReplicas", 0) == replicas
        and status.get("readyReplicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
    )


def ready_endpoints(slices: Sequence[dict[str, Any]]) -> list[Endpoint]:
    """The ready endpoints of a Service over all its EndpointSlices, sorted by pod name."""
    found: dict[str, Endpoint] = {}
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            pod = (endpoint.get("targetRef") or {}).get("name", "")
            for ip in endpoint.get("addresses") or []:
                found[pod or ip] = Endpoint(pod=pod or ip, ip=ip, node=endpoint.get("nodeName", ""))
    return sorted(found.values(), key=lambda e: e.pod)


def pod_ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def nodes_by_label(nodes: Sequence[dict[str, Any]], label: str) -> dict[str, tuple[str, str]]:
    """Label value -> (node name, InternalIP) for every node carrying ``label``."""
    found = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        value = (meta.get("labels") or {}).get(label)
        if not value:
            continue
        addresses = (node.get("status") or {}).get("addresses") or []
        internal = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "")
        found[str(value)] = (str(meta.get("name", "")), str(internal))
    return found


# -- the real client ----------------------------------------------------------------------------------------------


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SetupError(
            "the kind and kubeconfig backends need the Kubernetes client: `pip install kubernetes` "
            "(or install sticky-harness with its kind extra)"
        ) from exc


class Kube:
    """``KubeOps`` over the official client, for one kubeconfig file and context."""

    def __init__(self, kubeconfig: Path | None = None, context: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self._client: Any = None
        self._dynamic: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            config = _import("kubernetes.config")
            try:
                self._client = config.new_client_from_config(
                    config_file=str(self.kubeconfig) if self.kubeconfig else None, context=self.context
                )
            except Exception as exc:  # the client raises ConfigException, TypeError, OSError, ...
                where = self.kubeconfig or "the default kubeconfig"
                raise KubeError(
                    f"cannot load context {self.context or '(current)'} from {where}: {exc}; check "
                    "`kubectl config get-contexts`"
                ) from exc
        return self._client

    def _api(self, name: str) -> Any:
        return getattr(_import("kubernetes.client"), name)(self.client)

    def _resource(self, api_version: str, kind: str) -> Any:
        if self._dynamic is None:
            self._dynamic = _import("kubernetes.dynamic").DynamicClient(self.client)
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

    def _plain(self, obj: Any) -> Any:
        return self.client.sanitize_for_serialization(obj)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        exceptions = _import("kubernetes.client.exceptions")
        urllib3 = _import("urllib3")
        try:
            return fn(*args, **kwargs)
        except exceptions.ApiException as exc:
            detail = str(getattr(exc, "body", "") or exc.reason or "").strip()
            raise KubeError(
                f"the Kubernetes API refused {what}: {exc.status} {exc.reason}: {detail[:2000]}", status=exc.status
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(
                f"the Kubernetes API did not answer {what}: {exc}; is the cluster running (`kubectl cluster-info`)?"
            ) from exc

    def version(self) -> str:
        info = self._call("GET /version", self._api("VersionApi").get_code)
        return str(self._plain(info).get("gitVersion", ""))

    def apply(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        resource = self._resource(obj["apiVersion"], obj["kind"])
        what = f"APPLY {obj['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")
        self._call(
            what,
            self._dynamic.server_side_apply,
            resource,
            body=obj,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        api = self._api("AppsV1Api")
        found = self._call(f"GET Deployment {namespace}/{name}", api.read_namespaced_deployment, name, namespace)
        return dict(self._plain(found))

    def _patch(self, api_version: str, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        resource = self._resource(api_version, kind)
        self._call(
            f"PATCH {kind} {namespace}/{name}",
            self._dynamic.patch,
            resource,
            body=body,
            name=name,
            namespace=namespace,
            content_type=_MERGE_PATCH,
            field_manager=FIELD_MANAGER,
        )

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self._patch("apps/v1", "Deployment", namespace, name, {"spec": {"replicas": replicas}})

    def restart(self, namespace: str, name: str, stamp: str) -> None:
        # What `kubectl rollout restart` does: a new template annotation starts a rolling update.
        annotation = {"kubectl.kubernetes.io/restartedAt": stamp}
        body = {"spec": {"template": {"metadata": {"annotations": annotation}}}}
        self._patch("apps/v1", "Deployment", namespace, name, body)

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        api = self._api("CoreV1Api")
        found = self._call(
            f"LIST Pod {namespace} ({selector})", api.list_namespaced_pod, namespace, label_selector=selector
        )
        return list(self._plain(found).get("items") or [])

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        api = self._api("CoreV1Api")
        self._call(
            f"DELETE Pod {namespace}/{name}",
            api.delete_namespaced_pod,
            name,
            namespace,
            grace_period_seconds=grace_seconds,
        )

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        api = self._api("DiscoveryV1Api")
        selector = f"kubernetes.io/service-name={service}"
        found = self._call(
            f"LIST EndpointSlice {namespace} ({selector})",
            api.list_namespaced_endpoint_slice,
            namespace,
            label_selector=selector,
        )
        return list(self._plain(found).get("items") or [])

    def nodes(self) -> list[dict[str, Any]]:
        found = self._call("LIST Node", self._api("CoreV1Api").list_node)
        return list(self._plain(found).get("items") or [])

    def service(self, namespace: str, name: str) -> dict[str, Any]:
        api = self._api("CoreV1Api")
        found = self._call(f"GET Service {namespace}/{name}", api.read_namespaced_service, name, namespace)
        return dict(self._plain(found))

    def exec(self, namespace: str, pod: str, container: str, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        api = self._api("CoreV1Api")
        stream = _import("kubernetes.stream").stream
        what = f"EXEC in Pod {namespace}/{pod} ({argv[0]})"
        response = self._call(
            what,
            stream,
            api.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            container=container,
            command=list(argv),
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        self._call(what, response.run_forever, timeout=timeout)
        output = str(response.read_stdout() or "") + str(response.read_stderr() or "")
        code = response.returncode
        response.close()
        return (-1 if code is None else int(code)), output

    def pod_log(self, namespace: str, pod: str, container: str, previous: bool) -> str:
        api = self._api("CoreV1Api")
        found = self._call(
            f"GET Pod/log {namespace}/{pod}",
            api.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            previous=previous,
            timestamps=True,
        )
        return str(found)

    def events(self, namespace: str) -> list[dict[str, Any]]:
        found = self._call(f"LIST Event {namespace}", self._api("CoreV1Api").list_namespaced_event, namespace)
        return list(self._plain(found).get("items") or [])

    def delete_namespace(self, name: str) -> None:
        api = self._api("CoreV1Api")
        try:
            self._call(f"DELETE Namespace {name}", api.delete_namespace, name, propagation_policy="Background")
        except KubeError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    def delete(self, api_version: str, kind: str, name: str) -> None:
        """Delete a cluster-scoped object (a ClusterRole, an IngressClass, ...); one already gone is fine."""
        resource = self._resource(api_version, kind)
        try:
            self._call(f"DELETE {kind} {name}", self._dynamic.delete, resource, name=name)
        except KubeError as exc:
            if exc.status != 404:
                raise
