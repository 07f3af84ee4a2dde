"""The network daemon's two parts, run apart by the local backend: each answers for what it runs and refuses the
rest by name; both answer ping and descriptors; the whole daemon answers everything."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.net.kubeproxy import ServiceProxy, ServiceRule
from harness.net.netd import NetDaemon, control_path_of
from tests.net.test_faults import netd_plan

ENDPOINTS = {
    "op": "endpoints",
    "service": "app",
    "endpoints": [{"name": "a", "host": "127.3.0.1", "port": 1, "node": "node-0", "ready": True}],
}
FAULT = {"op": "fault", "node": "node-1", "kind": "latency", "params": {"latency": 100, "jitter": 10}}


def daemon(part: str) -> NetDaemon:
    plan = netd_plan()
    d = NetDaemon(plan, part)
    d.proxies.clear()
    if part in ("all", "nodes"):  # what start() builds, without listening
        rule = ServiceRule("app", "None", 10800, True, False)
        for node in plan.nodes:
            d.proxies[(node.name, "app")] = ServiceProxy(node.name, node.ip, rule, 1)
    return d


def test_each_part_answers_for_what_it_runs_and_refuses_the_rest() -> None:
    lb, nodes, whole = daemon("lb"), daemon("nodes"), daemon("all")
    assert whole.handle_request(ENDPOINTS)["ok"] and whole.handle_request(FAULT)["ok"]
    assert nodes.handle_request(ENDPOINTS)["ok"]
    refused = nodes.handle_request(FAULT)
    assert not refused["ok"] and "runs the nodes part, not the balancer" in refused["error"]
    assert lb.handle_request(FAULT)["ok"]
    assert not lb.handle_request(ENDPOINTS)["ok"]  # the balancer has no node proxies
    for d in (lb, nodes):
        assert d.handle_request({"op": "ping"})["part"] == d.part
        assert d.handle_request({"op": "descriptors"})["descriptors"]["limit"] > 0
    assert lb.handle_request({"op": "snapshot"})["lb"] is not None
    assert nodes.handle_request({"op": "snapshot"})["lb"] is None
    assert len(nodes.handle_request({"op": "snapshot"})["services"]) == 2


def test_the_parts_have_their_own_control_sockets_and_an_unknown_part_is_refused() -> None:
    path = netd_plan().control_path
    assert daemon("lb").control_path == daemon("all").control_path == path
    assert daemon("nodes").control_path == control_path_of(path, "nodes") == path + "-nodes"
    with pytest.raises(UsageError, match="unknown part 'both'"):
        daemon("both")
