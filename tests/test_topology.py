"""Topology files: the built-ins load, and a mistake names the file, the field and what is allowed.

Also here: topologies whose tier is the ingress-nginx controller need a real cluster, and every way of starting
one on the local backend refuses them in one line, before anything starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.cluster.local.backend import LocalCluster
from harness.errors import TopologyError, UsageError
from harness.lifecycle import BackendOptions, make_cluster
from harness.topology import available_topologies, load_topology, parse_duration

KIND_ONLY = ["ingress-nginx-cookie-balanced", "ingress-nginx-cookie-persistent", "ingress-nginx-hash"]


def test_every_builtin_topology_loads_with_an_expected_verdict() -> None:
    names = available_topologies()
    assert {"seed", "nginx-hash", "no-affinity", *KIND_ONLY} <= set(names)
    for name in names:
        topo = load_topology(name)
        assert topo.name == name
        assert set(topo.expected_verdicts()) == {"continuity", "affinity", "balance"}
        assert topo.kind_only == (name in KIND_ONLY)


@pytest.mark.parametrize(
    ("text", "value"), [("60s", 60.0), ("1.5m", 90.0), ("250ms", 0.25), ("2h", 7200.0), (5, 5.0), ("7", 7.0)]
)
def test_durations(text: object, value: float) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["soon", "-5s", "5 parsecs", True, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(body, encoding="utf-8")
    return path


BASE = """name: mine
nodes: 2
load_balancer: {mode: tcp, proxy_protocol: none}
app: {replicas: 2}
expected: {continuity: pass, affinity: pass, balance: pass}
"""


def test_a_valid_user_topology_loads_from_a_path(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, BASE))
    assert topo.nodes == 2 and topo.app.replicas == 2 and topo.tier is None


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        (("nodes: 2", "nodes: 0"), "field nodes", "greater than or equal to 1"),
        (("nodes: 2", "nodez: 2"), "field nodez", "unknown field"),
        (("mode: tcp", "mode: alb"), "field load_balancer.mode", "'elb', 'nlb' or 'tcp'"),
        (("proxy_protocol: none", "proxy_protocol: v1"), "proxy_protocol must be 'none'", "no tier"),
        (("continuity: pass", "continuity: maybe"), "field expected.continuity", "'pass', 'fail' or 'n/a'"),
        (("expected: {continuity: pass, affinity: pass, balance: pass}\n", ""), "field expected", "missing"),
    ],
)
def test_mistakes_name_the_file_the_field_and_what_is_allowed(
    tmp_path: Path, change: tuple[str, str], field: str, hint: str
) -> None:
    path = write(tmp_path, BASE.replace(*change))
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    message = str(err.value)
    assert str(path) in message
    assert field in message
    assert hint in message


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(TopologyError, match=r"built-in: .*nginx-hash"):
        load_topology("no-such-topology")


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="not valid YAML"):
        load_topology(write(tmp_path, "name: [unclosed"))
    with pytest.raises(TopologyError, match="mapping"):
        load_topology(write(tmp_path, "- a\n- b\n"))


def test_missing_template_is_named(tmp_path: Path) -> None:
    body = BASE.replace("proxy_protocol: none", "proxy_protocol: v1") + (
        "tier: {kind: nginx, template: nginx/nope.conf.j2, upstream: endpoints}\n"
    )
    with pytest.raises(TopologyError, match=r"tier.template: .*nope.conf.j2 does not exist"):
        load_topology(write(tmp_path, body))


INGRESS = BASE.replace("proxy_protocol: none", "proxy_protocol: v1") + "tier: {kind: ingress-nginx, %s}\n"


def test_an_ingress_nginx_tier_loads(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, INGRESS % "affinity: hash, hash_by: '${remote_addr}-x'"))
    assert topo.ingress is not None and topo.proxy_tier is None and topo.kind_only
    assert topo.ingress.hash_by == "${remote_addr}-x" and topo.ingress.replicas == 2
    topo = load_topology(write(tmp_path, INGRESS % "affinity: cookie, cookie_max_age: 2h"))
    assert topo.ingress is not None and topo.ingress.mode == "balanced" and topo.ingress.cookie_max_age == 7200
    assert topo.entry_service == topo.ingress.service


@pytest.mark.parametrize(
    ("tier", "hint"),
    [
        (
            "affinity: hash, hash_by: $remote_addr, affinity_mode: persistent",
            "affinity_mode applies only with affinity: cookie",
        ),
        (
            "affinity: none, cookie_name: C, cookie_max_age: 60s",
            "cookie_name and cookie_max_age apply only with affinity: cookie",
        ),
        ("affinity: hash", "affinity: hash needs hash_by, the nginx variable to hash on, such as $remote_addr"),
        (
            "affinity: cookie, hash_by: $remote_addr",
            "hash_by only applies with affinity: hash, not with affinity: cookie",
        ),
        ("affinity: hash, hash_by: remote_addr", "hash_by 'remote_addr': give an nginx variable such as $remote_addr"),
        ("affinity: hash, hash_by: '$remote_addr; return 200'", "give an nginx variable"),
        ("affinity: cookie, affinity_mode: sticky", "'balanced' or 'persistent'"),
        ("affinity: cookies", "'cookie', 'hash' or 'none'"),
        ("affinity: cookie, cookie_name: 'a b'", "field tier.cookie_name: String should match pattern"),
        ("affinity: cookie, cookie_max_age: 0s", "cookie_max_age: at least 1s"),
        ("affinity: hash, hash_by: $remote_addr, template: nginx/hash.conf.j2", "field tier.template: unknown field"),
    ],
)
def test_a_bad_ingress_nginx_combination_is_refused_with_a_clear_message(tmp_path: Path, tier: str, hint: str) -> None:
    path = write(tmp_path, INGRESS % tier)
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    message = str(err.value)
    assert str(path) in message and "field tier" in message
    assert "ingress-nginx." not in message  # the union's tag is not a field the person wrote
    assert hint in message
    assert "\n" not in message


def test_an_unknown_tier_kind_lists_the_kinds(tmp_path: Path) -> None:
    body = BASE.replace("proxy_protocol: none", "proxy_protocol: v1") + "tier: {kind: traefik, affinity: cookie}\n"
    with pytest.raises(TopologyError, match="'nginx', 'haproxy', 'ingress-nginx'"):
        load_topology(write(tmp_path, body))


# -- the local backend refuses kind-only topologies, in one line, before anything starts --------------------------


@pytest.mark.parametrize("name", KIND_ONLY)
def test_the_local_backend_refuses_a_kind_only_topology(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        LocalCluster(load_topology(name), run_id="r", run_dir=tmp_path / "r", seed=1)
    message = str(err.value)
    assert "\n" not in message and "--backend kind" in message and name in message
    with pytest.raises(UsageError, match="--backend kind"):
        make_cluster(load_topology(name), BackendOptions(), run_id="r", run_dir=tmp_path / "r", seed=1)
    assert not (tmp_path / "r").exists()


def test_harness_up_and_run_refuse_a_kind_only_topology_on_the_local_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    for command in (["up"], ["run", "--duration", "5s"]):
        assert main([*command, "--topology", "ingress-nginx-hash", "--reports-dir", str(reports)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: topology ingress-nginx-hash runs the ingress-nginx")
        assert "--backend kind" in err[0]
    assert not list(reports.glob("*/cluster.json")) and not list(reports.glob("*/pods"))


def test_harness_topologies_marks_the_kind_only_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topologies"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(available_topologies())
    for name, line in lines.items():
        assert ("kind/kubeconfig only" in line) == (name in KIND_ONLY), line


def test_a_converged_run_has_its_own_expectation_where_the_topology_declares_one() -> None:
    seed = load_topology("seed")
    assert seed.expected_verdicts() == {"continuity": "fail", "affinity": "fail", "balance": "fail"}
    assert seed.expected_verdicts(converged=True) == {"continuity": "pass", "affinity": "pass", "balance": "fail"}
    hashed = load_topology("nginx-hash")  # declares none: converging changes nothing it expects
    assert hashed.expected_verdicts(converged=True) == hashed.expected_verdicts()
    ip_hash = load_topology("nginx-ip-hash")
    assert ip_hash.expected_verdicts("shared-24", converged=True)["balance"] == "fail"


def test_mistakes_name_their_line(tmp_path: Path) -> None:
    lines = BASE.splitlines()
    wrong = [line.replace("mode: tcp", "mode: alb") for line in lines]
    number = next(i for i, line in enumerate(wrong, start=1) if "mode: alb" in line)
    with pytest.raises(TopologyError) as err:
        load_topology(write(tmp_path, "\n".join(wrong) + "\n"))
    assert f"line {number}, field load_balancer.mode" in str(err.value)
    # and YAML that does not parse: its line and column, on one line
    with pytest.raises(TopologyError) as err:
        load_topology(write(tmp_path, "name: a\nnodes: [1\n"))
    message = str(err.value)
    assert "line 3, column 1: not valid YAML: expected ',' or ']'" in message and "\n" not in message


def test_a_template_that_does_not_render_names_the_file_and_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cluster.local import tier

    (tmp_path / "syntax.conf.j2").write_text("events {}\n{% if %}\n", encoding="utf-8")
    (tmp_path / "undefined.conf.j2").write_text("listen {{ listen_port }};\n{{ nothing_here.x }}\n", encoding="utf-8")
    (tmp_path / "fine.conf.j2").write_text("listen {{ listen_port }};\n", encoding="utf-8")
    monkeypatch.setattr(tier, "templates_dir", lambda: tmp_path)
    assert tier.render_template("fine.conf.j2", listen_port=80) == "listen 80;\n"
    with pytest.raises(UsageError) as err:
        tier.render_template("syntax.conf.j2", listen_port=80)
    assert f"{tmp_path / 'syntax.conf.j2'} line 2 does not render: Expected an expression" in str(err.value)
    with pytest.raises(UsageError) as err:
        tier.render_template("undefined.conf.j2", listen_port=80)
    assert "'nothing_here' is undefined (a template has these values: listen_port)" in str(err.value)


def test_a_tier_reads_the_proxy_header_as_the_balancer_sends_unless_told_otherwise(tmp_path: Path) -> None:
    topo = load_topology("nginx-hash")
    assert topo.tier is not None and topo.tier.proxy_protocol == "as_balancer"
    assert topo.tier.reads_proxy_protocol("v1") and topo.tier.reads_proxy_protocol("v2")
    assert not topo.tier.reads_proxy_protocol("none")
    expect = topo.tier.model_copy(update={"proxy_protocol": "expect"})
    ignore = topo.tier.model_copy(update={"proxy_protocol": "none"})
    assert expect.reads_proxy_protocol("none") and not ignore.reads_proxy_protocol("v1")
    text = (Path(__file__).resolve().parents[1] / "clusters/topologies/nginx-hash.yaml").read_text(encoding="utf-8")
    wrong = write(tmp_path, text.replace("  upstream: endpoints", "  upstream: endpoints\n  proxy_protocol: maybe"))
    with pytest.raises(
        TopologyError, match=r"field tier.proxy_protocol: Input should be 'as_balancer', 'expect' or 'none'"
    ):
        load_topology(wrong)


def test_a_missing_proxy_binary_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cluster.local import tier
    from harness.errors import SetupError

    monkeypatch.setattr(tier.shutil, "which", lambda name: None)
    monkeypatch.setattr(tier.os.path, "exists", lambda path: False)
    for kind, package in (("nginx", "nginx-light"), ("haproxy", "haproxy")):
        with pytest.raises(SetupError) as err:
            tier.find_binary(tier.PROXIES[kind])
        message = str(err.value)
        assert f"{kind} is not installed" in message and f"`apt-get install {package}`" in message
