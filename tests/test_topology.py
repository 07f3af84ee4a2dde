"""Topology files: the built-ins load, and a mistake names the file, the field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import TopologyError
from harness.topology import available_topologies, load_topology, parse_duration


def test_every_builtin_topology_loads_with_an_expected_verdict() -> None:
    names = available_topologies()
    assert {"seed", "nginx-hash", "no-affinity"} <= set(names)
    for name in names:
        topo = load_topology(name)
        assert topo.name == name
        assert set(topo.expected_verdicts()) == {"continuity", "affinity", "balance"}


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
