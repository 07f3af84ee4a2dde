"""Observing that an event took effect: each way an event can fail to, shown to be caught, next to the case
where it did take effect; and probes through a real app pod."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster.base import Pod
from harness.observe import NotDone, entry_handshake, find_through_entry, observe_event, probe_addresses
from tests.app.conftest import app_pod


def app(name: str) -> Pod:
    return Pod(name, "app", "node-0", "127.4.0.9", 1)


class Fake:
    entry_url = "http://127.0.0.1:9"

    def __init__(self, answering: set[str], in_rotation: bool = True) -> None:
        self.answering = answering
        self.rotation = in_rotation

    def pod_answers(self, pod: Pod) -> bool:
        return pod.name in self.answering

    def node_in_balancer(self, node: str) -> bool:
        return self.rotation


def test_probe_addresses_are_fresh_and_each_in_its_own_slash_24() -> None:
    first = list(itertools.islice(probe_addresses(), 5000))
    assert len(set(first)) == 5000
    assert len({a.rsplit(".", 1)[0] for a in first[:4096]}) == 4096
    assert all(a.startswith("127.") and 240 <= int(a.split(".")[1]) < 256 for a in first)


def test_finding_new_pods_through_the_entry_stops_when_all_answered() -> None:
    answers: Iterator[str | None] = iter(["app-0", None, "app-3", "app-1", "app-4", "app-3"])
    calls: list[str | None] = []

    def handshake(_url: str, source: str | None) -> str | None:
        calls.append(source)
        return next(answers)

    seen = find_through_entry("http://x", {"app-3", "app-4"}, probe_addresses(), handshake=handshake)
    assert seen == {"app-3", "app-4"} and len(calls) == 5 and len(set(calls)) == 5


def test_finding_gives_up_at_the_budget() -> None:
    now = [0.0]

    def handshake(_url: str, _source: str | None) -> str:
        now[0] += 1.0
        return "app-0"

    seen = find_through_entry(
        "http://x", {"app-3"}, probe_addresses(), budget=5.0, clock=lambda: now[0], handshake=handshake
    )
    assert seen == set() and now[0] == 5.0


def test_a_new_pod_alive_but_unreached_is_observed_and_said() -> None:
    seen = observe_event(Fake({"app-3"}), "scale", "app", [], [app("app-3")], probe_addresses(), budget=0)
    assert seen.unreached == ("app-3",) and "answered directly" in seen.text


def test_a_new_pod_that_never_answers_is_not_done() -> None:
    with pytest.raises(NotDone, match="app-3 never answered a handshake"):
        observe_event(Fake(set()), "scale", "app", [], [app("app-3")], probe_addresses(), budget=0)


def test_a_removed_pod_that_still_answers_is_not_done() -> None:
    with pytest.raises(NotDone, match="app-1 was removed but still answers"):
        observe_event(Fake({"app-1"}), "scale", "app", [app("app-1")], [], probe_addresses(), gone_budget=0.2)
    seen = observe_event(Fake(set()), "scale", "app", [app("app-1")], [], probe_addresses())
    assert seen.text == "app-1 no longer answers"


def test_a_balancer_that_kept_the_node_is_not_done() -> None:
    with pytest.raises(NotDone, match="still has node-1 in its rotation"):
        observe_event(
            Fake(set(), in_rotation=True), "lb-out", "app", [], [], probe_addresses(), node="node-1", enabled=False
        )
    seen = observe_event(
        Fake(set(), in_rotation=False), "lb-out", "app", [], [], probe_addresses(), node="node-1", enabled=False
    )
    assert seen.text == "the balancer has node-1 out of its rotation"


def test_a_tier_pod_that_never_answers_is_not_done() -> None:
    tier = Pod("nginx-2", "tier", "node-0", "127.3.0.3", 1)
    with pytest.raises(NotDone, match="tier pod nginx-2 never answered"):
        observe_event(Fake(set()), "scale", "tier", [], [tier], probe_addresses())
    assert (
        "nginx-2 answered handshakes"
        in observe_event(Fake({"nginx-2"}), "scale", "tier", [], [tier], probe_addresses()).text
    )


def test_a_probe_handshake_names_the_pod_from_its_own_address(tmp_path: Path) -> None:
    with app_pod("A", tmp_path) as pod:
        assert entry_handshake(pod.url, "127.240.7.1") == "A"
    assert entry_handshake("http://127.0.0.1:9", "127.240.7.2") is None  # nothing listens there


def test_a_backend_that_cannot_ask_pods_directly_says_so() -> None:
    class Blind:
        entry_url = "http://127.0.0.1:9"

    seen = observe_event(Blind(), "scale", "app", [], [app("app-3")], probe_addresses(), budget=0)
    assert seen.unreached == () and "cannot ask a pod directly" in seen.text
    assert "answered directly" not in seen.text
