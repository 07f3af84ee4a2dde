"""The kind backend's manifests and configs, checked with everything that runs without a cluster.

No kind cluster can start on the machines these tests run on, so the manifests are validated against the pinned
Kubernetes version's OpenAPI schemas (kubernetes-validate, strict: no unknown field), the tier config they ship
is compared with the local backend's rendering and checked by a real ``nginx -t`` / ``haproxy -c``, and the
kind configs are checked against kind's v1alpha4 fields. The ingress-nginx tier's install is checked for what
the schemas cannot see: that its pieces name each other (class, ConfigMap, ServiceAccount, Role, Lease, ports),
and that the annotations and ConfigMap are what the topology says.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.cluster.kind.config import (
    KUBERNETES_VERSION,
    NODE_IMAGE,
    PROXY_MODES,
    kind_config_path,
    read_kind_config,
    render_to_dir,
)
from harness.cluster.kind.ingress import (
    INGRESS_NGINX_IMAGE,
    INGRESS_NGINX_VERSION,
    controller_class,
    ingress_class_name,
)
from harness.cluster.kind.manifests import (
    APP_IMAGE,
    ENTRY_NODE_PORT,
    Endpoint,
    app_service_host,
    namespace_for,
    render_manifests,
    tier_reload_argv,
)
from harness.cluster.kind.objects import CLUSTER_SCOPED
from harness.cluster.local.tier import render_template
from harness.errors import UsageError
from harness.topology import Topology, available_topologies, load_topology

TOPOLOGIES = available_topologies()
TIER_TOPOLOGIES = [n for n in TOPOLOGIES if load_topology(n).proxy_tier is not None]  # nginx, HAProxy
NGINX_TOPOLOGIES = [n for n in TIER_TOPOLOGIES if getattr(load_topology(n).tier, "kind", "") == "nginx"]
RUN_ID = "20250101-120000-test-ab12"
INGRESS_TOPOLOGIES = ["ingress-nginx-cookie-balanced", "ingress-nginx-cookie-persistent", "ingress-nginx-hash"]
ANNOTATION = "nginx.ingress.kubernetes.io/"
# The controller's install, in apply order: permissions and configuration, the Ingress, the controller, its Service.
INGRESS_ORDER = [
    ("ServiceAccount", "ingress-nginx"),
    ("Role", "ingress-nginx"),
    ("RoleBinding", "ingress-nginx"),
    ("ClusterRole", f"sticky-ingress-nginx-{namespace_for(RUN_ID)}"),
    ("ClusterRoleBinding", f"sticky-ingress-nginx-{namespace_for(RUN_ID)}"),
    ("ConfigMap", "ingress-nginx-controller"),
    ("IngressClass", f"sticky-ingress-nginx-{namespace_for(RUN_ID)}"),
    ("Ingress", "app"),
    ("Deployment", "tier"),
    ("Service", "tier"),
]
ENDPOINTS = [Endpoint("app-7c9d-b", "10.244.2.7", "w2"), Endpoint("app-7c9d-a", "10.244.1.5", "w1")]


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def variants(name: str) -> list[list[dict[str, Any]]]:
    topology = load_topology(name)
    return [
        render_manifests(topology, run_id=RUN_ID),
        render_manifests(topology, run_id=RUN_ID, app_endpoints=ENDPOINTS, node_port=ENTRY_NODE_PORT),
    ]


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_every_topology_renders_in_apply_order(name: str) -> None:
    topology = load_topology(name)
    objects = render_manifests(topology, run_id=RUN_ID)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    expected = [("Namespace", namespace_for(RUN_ID)), ("Deployment", "app"), ("Service", "app")]
    if topology.proxy_tier is not None:
        expected += [("ConfigMap", "tier-config"), ("Deployment", "tier"), ("Service", "tier")]
    elif topology.ingress is not None:
        expected += INGRESS_ORDER
    assert kinds == expected
    for obj in objects[1:]:
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == namespace_for(RUN_ID)
        assert obj["metadata"]["labels"]["sticky-harness/run-id"] == RUN_ID
        assert obj["metadata"]["labels"]["sticky-harness/topology"] == name


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_every_manifest_passes_strict_schema_validation(name: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (pip install it)")
    for objects in variants(name):
        for obj in objects:
            # raises ValidationError on any unknown field or wrong type; SchemaNotFoundError on an unknown kind
            assert kv.validate(obj, KUBERNETES_VERSION, strict=True) == "1.31"


def test_strict_validation_catches_a_typo() -> None:
    """Negative control: the validator used above does reject what the API server would."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (pip install it)")
    service = by_kind(render_manifests(load_topology("seed"), run_id=RUN_ID), "Service", "tier")
    service["spec"]["sessionAffinityTimeout"] = 30
    with pytest.raises(kv.ValidationError):
        kv.validate(service, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_services_carry_the_topology_affinity_and_traffic_policy(name: str) -> None:
    topology = load_topology(name)
    objects = render_manifests(topology, run_id=RUN_ID)
    services = {"app": (by_kind(objects, "Service", "app"), topology.app.service)}
    if topology.tier is not None:
        services["tier"] = (by_kind(objects, "Service", "tier"), topology.tier.service)
    entry = "tier" if topology.tier is not None else "app"
    for component, (service, spec) in services.items():
        body = service["spec"]
        assert body["sessionAffinity"] == spec.session_affinity.value
        if spec.session_affinity.value == "ClientIP":
            assert body["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": spec.timeout_seconds}}
        else:  # the API refuses sessionAffinityConfig with None
            assert "sessionAffinityConfig" not in body
        if component == entry:
            assert body["type"] == "NodePort"
            assert body["externalTrafficPolicy"] == spec.external_traffic_policy.value
        else:  # the API refuses externalTrafficPolicy on a ClusterIP Service
            assert body["type"] == "ClusterIP"
            assert "externalTrafficPolicy" not in body


def test_a_custom_timeout_and_local_policy_reach_the_services() -> None:
    topology = Topology.model_validate(
        {
            "name": "custom",
            "load_balancer": {"proxy_protocol": "v2"},
            "tier": {
                "kind": "nginx",
                "template": "nginx/seed.conf.j2",
                "upstream": "service",
                "service": {"session_affinity": "ClientIP", "timeout_seconds": 600, "external_traffic_policy": "Local"},
            },
            "app": {"service": {"session_affinity": "ClientIP", "timeout_seconds": 42}},
            "expected": {"continuity": "fail", "affinity": "fail", "balance": "fail"},
        }
    )
    objects = render_manifests(topology, run_id=RUN_ID)
    tier, app = by_kind(objects, "Service", "tier")["spec"], by_kind(objects, "Service", "app")["spec"]
    assert tier["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 600
    assert tier["externalTrafficPolicy"] == "Local"
    assert app["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 42


def test_the_app_pods_get_their_name_and_a_handshake_readiness_probe() -> None:
    objects = render_manifests(load_topology("no-affinity"), run_id=RUN_ID)
    deployment = by_kind(objects, "Deployment", "app")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["HOST"]["value"] == "0.0.0.0"
    assert env["PORT"]["value"] == "8080"
    assert container["image"] == APP_IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == "/socket.io/?EIO=4&transport=polling"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector.items() == by_kind(objects, "Service", "app")["spec"]["selector"].items()


@pytest.mark.parametrize(
    ("name", "strict"), [("nlb-sticky-local", True), ("clientip-local", True), ("no-affinity", False), ("seed", False)]
)
def test_app_pods_behind_a_local_nodeport_are_spread_strictly(name: str, strict: bool) -> None:
    """A node without an app pod black-holes what the balancer sends it under externalTrafficPolicy Local: such
    pods must land one per node (DoNotSchedule), and the balancer health-checks the nodes."""
    topology = load_topology(name)
    deployment = by_kind(render_manifests(topology, run_id=RUN_ID), "Deployment", "app")
    (constraint,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert constraint["whenUnsatisfiable"] == ("DoNotSchedule" if strict else "ScheduleAnyway")
    assert constraint["maxSkew"] == 1
    if strict:
        assert topology.load_balancer.health_check is not None


def test_namespace_and_labels_are_valid_for_any_run_id() -> None:
    long_id = "20250101-120000-" + "a" * 41 + "-ffff"
    assert len(namespace_for(long_id)) <= 63
    assert namespace_for("Run_ID.x") == "run-id-x"
    objects = render_manifests(load_topology("seed"), run_id=long_id)
    assert all(len(v) <= 63 for o in objects for v in o["metadata"]["labels"].values())


@pytest.mark.parametrize("name", TIER_TOPOLOGIES)
def test_the_tier_configmap_is_the_local_backends_template(name: str) -> None:
    topology = load_topology(name)
    tier = topology.proxy_tier
    assert tier is not None
    objects = render_manifests(topology, run_id=RUN_ID, app_endpoints=ENDPOINTS)
    data = by_kind(objects, "ConfigMap", "tier-config")["data"]
    if tier.upstream == "service":
        servers = [("app", f"{app_service_host(namespace_for(RUN_ID))}:80")]
    else:  # sorted by pod name, so that every tier pod builds the same ring
        servers = [("app-7c9d-a", "10.244.1.5:8080"), ("app-7c9d-b", "10.244.2.7:8080")]
    expected = render_template(
        tier.template,
        pod_name="$hostname" if tier.kind == "nginx" else "%[hostname]",
        listen_addr="",
        listen_port=8080,
        proxy_protocol=topology.load_balancer.proxy_protocol != "none",
        upstreams=[a for _, a in servers],
        servers=[{"name": n, "address": a} for n, a in servers],
        prefix="",
        pid_path="",
        error_log="",
        proxy_bind="",
    )
    assert data == {("nginx.conf" if tier.kind == "nginx" else "haproxy.cfg"): expected}


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return found


def _private_hosts_works(hosts: Path, name: str) -> bool:
    """Can this machine run a command with its own /etc/hosts (a private mount namespace, as root)?"""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec getent hosts "$1"', str(hosts)]
    done = subprocess.run([*probe, name], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "127.0.0.1" in done.stdout


def nginx_t(config: str, tmp_path: Path, hostname: str | None) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` of ``config``. nginx resolves upstream names when it loads a config; in a pod, cluster DNS
    answers for ``app.NS.svc.cluster.local``. Here the very same bytes are checked with a private /etc/hosts that
    maps the name to 127.0.0.1 (a mount namespace of our own), or, where that is not allowed, a copy with the
    name replaced by 127.0.0.1: every other byte is still nginx's to judge."""
    nginx = _nginx()
    conf = tmp_path / "nginx.conf"
    argv = [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)]
    if hostname is not None:
        hosts = tmp_path / "hosts"
        hosts.write_text(f"127.0.0.1 localhost {hostname}\n", encoding="utf-8")
        if _private_hosts_works(hosts, hostname):
            conf.write_text(config, encoding="utf-8")
            script = 'mount --bind "$0" /etc/hosts && exec "$@"'
            argv = ["unshare", "--mount", "sh", "-c", script, str(hosts), *argv]
        else:
            assert config.count(hostname) == 1
            config = config.replace(hostname, "127.0.0.1")
    conf.write_text(config, encoding="utf-8")
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", NGINX_TOPOLOGIES)
@pytest.mark.parametrize("with_endpoints", [False, True], ids=["placeholders", "endpoints"])
def test_the_nginx_configmap_passes_nginx_t(name: str, with_endpoints: bool, tmp_path: Path) -> None:
    topology = load_topology(name)
    tier = topology.proxy_tier
    assert tier is not None
    objects = render_manifests(topology, run_id=RUN_ID, app_endpoints=ENDPOINTS if with_endpoints else None)
    config = by_kind(objects, "ConfigMap", "tier-config")["data"]["nginx.conf"]
    hostname = app_service_host(namespace_for(RUN_ID)) if tier.upstream == "service" else None
    done = nginx_t(config, tmp_path, hostname)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


def test_nginx_t_fails_on_an_unresolvable_upstream(tmp_path: Path) -> None:
    """Negative control: the check above is real (nginx resolves the Service name it is given)."""
    objects = render_manifests(load_topology("seed"), run_id=RUN_ID)
    config = by_kind(objects, "ConfigMap", "tier-config")["data"]["nginx.conf"]
    done = nginx_t(config.replace("svc.cluster.local", "svc.invalid"), tmp_path, None)
    assert done.returncode != 0


def test_the_haproxy_configmap_passes_haproxy_c(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    for endpoints in (None, ENDPOINTS):
        objects = render_manifests(load_topology("haproxy-cookie"), run_id=RUN_ID, app_endpoints=endpoints)
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(by_kind(objects, "ConfigMap", "tier-config")["data"]["haproxy.cfg"], encoding="utf-8")
        done = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_placeholders_are_announced_and_replaced_by_endpoints() -> None:
    topology = load_topology("nginx-hash")
    placeholder = by_kind(render_manifests(topology, run_id=RUN_ID), "ConfigMap", "tier-config")
    assert "sticky-harness/upstreams" in placeholder["metadata"]["annotations"]
    assert "192.0.2.1:8080" in placeholder["data"]["nginx.conf"]
    real = by_kind(render_manifests(topology, run_id=RUN_ID, app_endpoints=ENDPOINTS), "ConfigMap", "tier-config")
    assert "annotations" not in real["metadata"]
    text = real["data"]["nginx.conf"]
    assert "192.0.2" not in text
    assert text.index("10.244.1.5:8080") < text.index("10.244.2.7:8080")


def test_the_reload_command_carries_the_config_intact() -> None:
    config = "worker_processes 1;\nerror_log /dev/stderr warn; # 'quotes' \"and\" $vars `ticks`\n"
    argv = tier_reload_argv("nginx", config)
    assert argv[:2] == ["sh", "-c"]
    assert base64.b64decode(argv[3]).decode() == config
    assert "nginx -t" in argv[2] and "nginx -s reload" in argv[2]
    assert subprocess.run(["sh", "-n", "-c", argv[2]], check=False).returncode == 0
    assert "kill -USR2 1" in tier_reload_argv("haproxy", config)[2]


@pytest.mark.parametrize("mode", PROXY_MODES)
def test_the_kind_configs(mode: str) -> None:
    config = read_kind_config(kind_config_path(mode))
    assert config.proxy_mode == mode
    assert config.image == NODE_IMAGE
    assert config.workers == ("node-0", "node-1", "node-2")
    assert sorted(config.host_ports.values()) == [30081, 30082, 30083]
    raw = yaml.safe_load(kind_config_path(mode).read_text(encoding="utf-8"))
    assert [n["role"] for n in raw["nodes"]] == ["control-plane", "worker", "worker", "worker"]
    for node in raw["nodes"][1:]:
        assert node["extraPortMappings"][0]["containerPort"] == ENTRY_NODE_PORT
        assert node["extraPortMappings"][0]["listenAddress"] == "127.0.0.1"


def test_a_kind_config_with_an_unknown_field_is_refused(tmp_path: Path) -> None:
    text = kind_config_path().read_text(encoding="utf-8").replace("kubeProxyMode:", "kubeProxyMod:")
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match="kubeProxyMod"):
        read_kind_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("name", ["seed", "no-affinity", "haproxy-cookie", "ingress-nginx-hash"])
def test_render_to_dir_writes_the_kind_config_and_every_manifest(name: str, tmp_path: Path) -> None:
    topology = load_topology(name)
    written = render_to_dir(topology, tmp_path, run_id=RUN_ID)
    assert all(p.is_file() for p in written)
    assert (tmp_path / "kind-config.yaml").read_text() == kind_config_path().read_text()
    combined = list(yaml.safe_load_all((tmp_path / "manifests.yaml").read_text()))
    assert combined == render_manifests(topology, run_id=RUN_ID)
    singles = sorted(tmp_path.glob("[0-9][0-9]-*.yaml"))
    assert [yaml.safe_load(p.read_text()) for p in singles] == combined
    if topology.proxy_tier is not None:
        key = "nginx.conf" if topology.proxy_tier.kind == "nginx" else "haproxy.cfg"
        assert (tmp_path / key).read_text() == by_kind(combined, "ConfigMap", "tier-config")["data"][key]
    else:  # no tier, or ingress-nginx: its configuration is its ConfigMap and the Ingress, both manifests
        assert not (tmp_path / "nginx.conf").exists() and not (tmp_path / "haproxy.cfg").exists()


# -- the ingress-nginx tier (kind and kubeconfig backends only) ------------------------------------------------


def ingress_objects(name: str, run_id: str = RUN_ID) -> dict[str, dict[str, Any]]:
    """The objects of an ingress-nginx topology by kind (each kind appears once, but for the app's and the tier's
    Deployment and Service, which are keyed "Deployment/tier" and so on)."""
    found = {}
    for obj in render_manifests(load_topology(name), run_id=run_id):
        key = (
            obj["kind"] if obj["kind"] not in ("Deployment", "Service") else f"{obj['kind']}/{obj['metadata']['name']}"
        )
        assert key not in found
        found[key] = obj
    return found


def annotations(name: str) -> dict[str, str]:
    result: dict[str, str] = ingress_objects(name)["Ingress"]["metadata"]["annotations"]
    return result


def without_topology_name(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with the label naming the topology removed (it differs between any two topologies)."""
    copied = yaml.safe_load(yaml.safe_dump(objects))
    for obj in copied:
        for where in (obj["metadata"], obj.get("spec", {}).get("template", {}).get("metadata", {})):
            where.get("labels", {}).pop("sticky-harness/topology", None)
    return list(copied)


def test_the_ingress_nginx_topologies_are_kind_only_and_expect_what_ingress_nginx_documents() -> None:
    for name in INGRESS_TOPOLOGIES:
        topology = load_topology(name)
        assert topology.kind_only and topology.ingress is not None and topology.proxy_tier is None
        assert topology.load_balancer.proxy_protocol == "v1" and topology.load_balancer.mode == "elb"
        assert topology.expected_verdicts() == {"continuity": "pass", "affinity": "pass", "balance": "pass"}
        assert "kind and kubeconfig backends only" in topology.description
    # hashing the client's address: clients behind one address all land on one pod
    assert load_topology("ingress-nginx-hash").expected_verdicts("single")["balance"] == "fail"
    assert load_topology("ingress-nginx-cookie-balanced").expected_verdicts("single")["balance"] == "pass"
    assert not [n for n in TOPOLOGIES if n not in INGRESS_TOPOLOGIES and load_topology(n).kind_only]


def test_cookie_balanced_and_persistent_differ_exactly_in_affinity_mode() -> None:
    balanced = annotations("ingress-nginx-cookie-balanced")
    persistent = annotations("ingress-nginx-cookie-persistent")
    assert balanced == {
        f"{ANNOTATION}affinity": "cookie",
        f"{ANNOTATION}affinity-mode": "balanced",
        f"{ANNOTATION}session-cookie-name": "STICKYPOD",
    }
    assert persistent == {**balanced, f"{ANNOTATION}affinity-mode": "persistent"}
    # and nothing else differs, in any object, but the label that names the topology
    objects = [
        without_topology_name(render_manifests(load_topology(name), run_id=RUN_ID))
        for name in ("ingress-nginx-cookie-balanced", "ingress-nginx-cookie-persistent")
    ]
    differing = [(a["kind"], a["metadata"]["name"]) for a, b in zip(*objects, strict=True) if a != b]
    assert differing == [("Ingress", "app")]


def test_hash_has_upstream_hash_by_and_no_cookie() -> None:
    assert annotations("ingress-nginx-hash") == {f"{ANNOTATION}upstream-hash-by": "$remote_addr"}


def test_a_cookie_max_age_and_no_affinity_reach_the_annotations() -> None:
    base = load_topology("ingress-nginx-cookie-balanced").model_dump(mode="json")
    aged = {**base, "tier": {**base["tier"], "affinity_mode": None, "cookie_name": None, "cookie_max_age": "2h"}}
    found = by_kind(render_manifests(Topology.model_validate(aged), run_id=RUN_ID), "Ingress", "app")
    assert found["metadata"]["annotations"] == {
        f"{ANNOTATION}affinity": "cookie",
        f"{ANNOTATION}affinity-mode": "balanced",  # ingress-nginx's default, said out loud
        f"{ANNOTATION}session-cookie-name": "INGRESSCOOKIE",
        f"{ANNOTATION}session-cookie-max-age": "7200",
    }
    none = {**base, "tier": {"kind": "ingress-nginx", "affinity": "none"}}
    found = by_kind(render_manifests(Topology.model_validate(none), run_id=RUN_ID), "Ingress", "app")
    assert found["metadata"]["annotations"] == {}


@pytest.mark.parametrize("name", INGRESS_TOPOLOGIES)
def test_the_controller_configmap_reads_proxy_headers_as_the_load_balancer_sends_them(name: str) -> None:
    topology = load_topology(name)
    data = ingress_objects(name)["ConfigMap"]["data"]
    assert data["use-proxy-protocol"] == "true"
    # long-polls last up to pingInterval + pingTimeout: nginx must wait longer than that
    assert int(data["proxy-read-timeout"]) > topology.app.ping_interval + topology.app.ping_timeout
    assert int(data["proxy-send-timeout"]) > topology.app.ping_interval + topology.app.ping_timeout
    plain = topology.model_copy(
        update={"load_balancer": topology.load_balancer.model_copy(update={"proxy_protocol": "none"})}
    )
    assert (
        by_kind(render_manifests(plain, run_id=RUN_ID), "ConfigMap", "ingress-nginx-controller")["data"][
            "use-proxy-protocol"
        ]
        == "false"
    )


@pytest.mark.parametrize("name", INGRESS_TOPOLOGIES)
def test_the_ingress_nginx_install_is_consistent(name: str) -> None:
    """What the schemas cannot check: that the pieces of the install name each other."""
    objects = ingress_objects(name)
    namespace = namespace_for(RUN_ID)
    ingress_class, ingress = objects["IngressClass"], objects["Ingress"]
    deployment, tier_service = objects["Deployment/tier"], objects["Service/tier"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    flags = dict(a.split("=", 1) for a in args[1:])
    assert args[0] == "/nginx-ingress-controller"
    # the run's own class: the Ingress asks for it, the IngressClass names the controller value this controller claims
    assert ingress["spec"]["ingressClassName"] == ingress_class["metadata"]["name"] == ingress_class_name(RUN_ID)
    assert flags["--ingress-class"] == ingress_class["metadata"]["name"]
    assert flags["--controller-class"] == ingress_class["spec"]["controller"] == controller_class(RUN_ID)
    assert flags["--configmap"] == f"$(POD_NAMESPACE)/{objects['ConfigMap']['metadata']['name']}"
    assert flags["--watch-namespace"] == "$(POD_NAMESPACE)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert not [a for a in args if "webhook" in a]  # the admission webhook is disabled
    # pinned, by digest, to a release that supports the node image's Kubernetes version
    assert container["image"] == INGRESS_NGINX_IMAGE
    assert container["image"].startswith(f"registry.k8s.io/ingress-nginx/controller:{INGRESS_NGINX_VERSION}@sha256:")
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 10254, "scheme": "HTTP"}
    # the image's binaries carry cap_net_bind_service: dropping it from the bounding set would make exec fail
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    # the entry: the controller's NodePort Service, to the port nginx listens on
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": int(flags["--http-port"]), "protocol": "TCP"}
    assert tier_service["spec"]["type"] == "NodePort" and tier_service["spec"]["ports"][0]["targetPort"] == "http"
    assert tier_service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert objects["Service/app"]["spec"]["type"] == "ClusterIP"
    # the Ingress sends to the app Service's port
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "app", "port": {"number": 80}}
    assert objects["Service/app"]["spec"]["ports"][0]["port"] == 80
    # permissions: the pod's ServiceAccount is bound to the Role and the ClusterRole
    account = objects["ServiceAccount"]["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    for binding, role in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        assert objects[binding]["subjects"] == subject
        assert objects[binding]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role,
            "name": objects[role]["metadata"]["name"],
        }
    rules = objects["Role"]["rules"]
    lease = next(r for r in rules if r["resources"] == ["leases"] and "resourceNames" in r)
    assert lease["resourceNames"] == [flags["--election-id"]] and set(lease["verbs"]) == {"get", "update"}
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    for needed in [("networking.k8s.io", "ingresses"), ("discovery.k8s.io", "endpointslices"), ("", "services")]:
        assert needed in granted
    cluster_granted = {r for rule in objects["ClusterRole"]["rules"] for r in rule["resources"]}
    assert "ingressclasses" in cluster_granted and "secrets" not in cluster_granted  # secrets: the namespace only


def test_two_runs_get_their_own_ingress_class_and_controller() -> None:
    one, two = ingress_objects("ingress-nginx-hash", "run-one"), ingress_objects("ingress-nginx-hash", "run-two")
    for kind in ("IngressClass", "ClusterRole", "ClusterRoleBinding"):
        assert one[kind]["metadata"]["name"] != two[kind]["metadata"]["name"]
    assert one["IngressClass"]["spec"]["controller"] != two["IngressClass"]["spec"]["controller"]
    assert one["IngressClass"]["spec"]["controller"] != "k8s.io/ingress-nginx"  # not a cluster's own ingress-nginx


def test_cluster_scoped_names_are_valid_for_any_run_id() -> None:
    subdomain = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    long_id = "20250101-120000-" + "a" * 41 + "-ffff"
    objects = render_manifests(load_topology("ingress-nginx-hash"), run_id=long_id)
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 253 and subdomain.match(name), name
        assert all(len(v) <= 63 for v in obj["metadata"]["labels"].values())
    controller = by_kind(objects, "IngressClass", ingress_class_name(long_id))["spec"]["controller"]
    prefix, _, path = controller.partition("/")  # a domain-prefixed path, as the API requires
    assert len(controller) <= 250 and subdomain.match(prefix) and re.match(r"^[a-z0-9-]+$", path)


def test_strict_validation_catches_a_typo_in_an_ingress() -> None:
    """Negative control: the ingress-nginx kinds are really checked against their schemas too."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (pip install it)")
    ingress = ingress_objects("ingress-nginx-hash")["Ingress"]
    ingress["spec"]["ingressClass"] = ingress["spec"].pop("ingressClassName")
    with pytest.raises(kv.ValidationError):
        kv.validate(ingress, KUBERNETES_VERSION, strict=True)
    role = ingress_objects("ingress-nginx-hash")["ClusterRole"]
    role["rules"][0]["resourceName"] = ["x"]
    with pytest.raises(kv.ValidationError):
        kv.validate(role, KUBERNETES_VERSION, strict=True)


def test_harness_render_writes_an_ingress_nginx_topology(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["render", "--backend", "kind", "--topology", "ingress-nginx-hash", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all(Path(p).is_file() for p in printed)
    combined = list(yaml.safe_load_all((out / "manifests.yaml").read_text()))
    assert combined == render_manifests(load_topology("ingress-nginx-hash"), run_id="sticky-ingress-nginx-hash")
    assert len(list(out.glob("[0-9][0-9]-*.yaml"))) == len(combined) == 3 + len(INGRESS_ORDER)
    assert (out / "07-clusterrole-sticky-ingress-nginx-sticky-ingress-nginx-hash.yaml").is_file()
    assert (out / "13-service-tier.yaml").is_file()
    assert by_kind(combined, "Ingress", "app")["metadata"]["annotations"] == {
        f"{ANNOTATION}upstream-hash-by": "$remote_addr"
    }
