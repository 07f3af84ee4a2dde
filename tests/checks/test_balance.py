from __future__ import annotations

import json

import pytest

from harness.checks import Thresholds, check_balance, jain_index, sessions_per_pod
from harness.client.records import Mode, SessionRecord

TH = Thresholds()
PODS = ["app-0", "app-1", "app-2"]


def spread(per_pod: dict[str, int]) -> list[SessionRecord]:
    """Sessions whose handshake was answered by each pod, as many as given."""
    return [
        SessionRecord(client=f"{pod}-c{i}", source="127.0.1.1", mode=Mode.POLLING, started=0.0, pods=[pod])
        for pod, n in per_pod.items()
        for i in range(n)
    ]


def test_an_even_spread_passes() -> None:
    result = check_balance(spread({"app-0": 10, "app-1": 10, "app-2": 10}), PODS, TH)
    assert result.verdict == "pass", result.reason
    assert result.figures["jain"] == 1.0
    assert result.figures["max_mean_ratio"] == 1.0
    assert result.figures["per_pod"] == {"app-0": 10, "app-1": 10, "app-2": 10}
    assert result.figures["idle_pods"] == []
    assert result.reason == "30 sessions over 3 pods: max/mean 1.00 ≤ 1.5, Jain 1.00 ≥ 0.8, no idle pod"


def test_negative_control_an_idle_pod_fails() -> None:
    result = check_balance(spread({"app-0": 15, "app-1": 15}), PODS, TH)
    assert result.verdict == "fail"
    assert result.figures["idle_pods"] == ["app-2"]
    assert result.figures["per_pod"] == {"app-0": 15, "app-1": 15, "app-2": 0}
    assert "1 idle pod (app-2)" in result.reason
    assert "pod app-2 got 0 of 30 sessions" in result.examples


def test_negative_control_a_90_10_split_fails() -> None:
    result = check_balance(spread({"app-0": 90, "app-1": 10}), ["app-0", "app-1"], TH)
    assert result.verdict == "fail"
    assert result.figures["max_mean_ratio"] == pytest.approx(1.8)
    assert result.figures["jain"] == pytest.approx(100**2 / (2 * (90**2 + 10**2)))
    assert "max/mean 1.80 > 1.5" in result.reason and "Jain 0.61 < 0.8" in result.reason
    assert result.examples[0] == "pod app-0 got 90 of 100 sessions (1.80x the mean)"


def test_too_few_sessions_is_not_applicable() -> None:
    result = check_balance(spread({"app-0": 19}), PODS, TH)
    assert result.verdict == "n/a"
    assert "only 19 sessions reached a pod" in result.reason
    assert check_balance([], [], TH).verdict == "n/a"


def test_pods_not_in_the_list_are_added() -> None:
    result = check_balance(spread({"app-0": 10, "app-1": 10, "app-9": 10}), ["app-0", "app-1"], TH)
    assert result.figures["per_pod"] == {"app-0": 10, "app-1": 10, "app-9": 10}
    assert result.figures["unlisted_pods"] == ["app-9"]
    assert result.verdict == "pass", result.reason


def test_sessions_that_reached_no_pod_are_not_counted() -> None:
    nowhere = SessionRecord(client="x", source="127.0.1.1", mode=Mode.POLLING, started=0.0)
    assert sessions_per_pod([*spread({"app-0": 2}), nowhere], ["app-0", "app-0"]) == {"app-0": 2}


def test_idle_pods_can_be_allowed_and_the_rest_is_judged_without_them() -> None:
    th = Thresholds(allow_idle_pods=True)
    result = check_balance(spread({"app-0": 15, "app-1": 15}), PODS, th)
    assert result.verdict == "pass", result.reason
    assert result.figures["judged_pods"] == 2
    assert "1 idle pods allowed" in result.reason
    assert check_balance(spread({"app-0": 27, "app-1": 3}), PODS, th).verdict == "fail"


def test_an_uneven_spread_fails_on_jain_alone() -> None:
    th = Thresholds(min_jain=0.99, max_ratio=2.0, balance_chance=0.0)
    result = check_balance(spread({"app-0": 12, "app-1": 8}), ["app-0", "app-1"], th)
    assert result.verdict == "fail"
    assert result.reason.startswith("unbalanced: Jain 0.96 < 0.99")
    assert result.examples == [
        "pod app-0 got 12 of 20 sessions (1.20x the mean)",
        "pod app-1 got 8 of 20 sessions (0.80x the mean)",
    ]


def test_everything_on_one_pod_of_three_fails_every_way() -> None:
    result = check_balance(spread({"app-1": 30}), PODS, TH)
    assert result.verdict == "fail"
    assert result.figures["jain"] == pytest.approx(1 / 3)
    assert result.figures["max_mean_ratio"] == pytest.approx(3.0)
    json.dumps(result.to_json())


def clients_on_pods(clients_per_pod: dict[str, int], each: int = 15) -> list[SessionRecord]:
    """Sticky clients: every client's sessions all go to its one pod."""
    return [
        SessionRecord(client=f"{pod}-c{c}", source="127.0.1.1", mode=Mode.POLLING, started=float(i), pods=[pod])
        for pod, n in clients_per_pod.items()
        for c in range(n)
        for i in range(each)
    ]


def test_unevenness_that_chance_gives_few_clients_passes_and_says_so() -> None:
    # a perfect random hash puts 10 of 20 clients on one of 3 pods in about one run in ten
    result = check_balance(clients_on_pods({"app-0": 10, "app-1": 5, "app-2": 5}), PODS, TH)
    assert result.verdict == "pass", result.reason
    assert result.figures["max_mean_ratio"] == pytest.approx(1.5 + 0.0)
    assert result.figures["clients"] == 20
    assert result.figures["chance"] == pytest.approx(0.2865, abs=1e-4)  # chi-square 2.5 on 2 degrees of freedom
    result = check_balance(clients_on_pods({"app-0": 11, "app-1": 5, "app-2": 4}), PODS, TH)
    assert result.verdict == "pass", result.reason
    assert result.reason.startswith("uneven as chance makes it: max/mean 1.65 > 1.5")
    assert "20 clients placed at random are at least this uneven 12% of the time" in result.reason
    assert result.notes == ["more clients judge balance more sharply: 20 clients leave it to chance"]


def test_negative_control_the_same_unevenness_over_many_clients_fails() -> None:
    result = check_balance(clients_on_pods({"app-0": 110, "app-1": 50, "app-2": 40}, each=2), PODS, TH)
    assert result.verdict == "fail"
    assert result.figures["chance"] < 1e-6
    assert result.reason.startswith("unbalanced: max/mean 1.65 > 1.5")


def test_negative_control_clients_of_one_subnet_on_one_pod_fail() -> None:
    # nginx ip_hash with every client in one /24: all of them on one pod
    result = check_balance(clients_on_pods({"app-1": 20}), PODS, TH)
    assert result.verdict == "fail"
    assert result.figures["chance"] < 1e-6
    assert "20 clients at random" in result.reason


def test_clients_that_move_between_pods_vote_for_each_pod_they_used() -> None:
    # 30 non-sticky clients that each spread 3:1:0 over the pods: the votes are 22.5 / 7.5 / 0
    sessions = [
        SessionRecord(client=f"c{c}", source="127.0.1.1", mode=Mode.POLLING, started=float(i), pods=[pod])
        for c in range(30)
        for i, pod in enumerate(["app-0", "app-0", "app-0", "app-1"])
    ]
    result = check_balance(sessions, PODS, TH)
    assert result.verdict == "fail"
    assert result.figures["clients"] == 30
    assert result.figures["chance"] < 1e-5


def test_chance_can_be_switched_off() -> None:
    th = Thresholds(balance_chance=0.0)
    result = check_balance(clients_on_pods({"app-0": 10, "app-1": 5, "app-2": 4}), PODS, th)
    assert result.verdict == "fail"


def test_jain_index() -> None:
    assert jain_index([]) == 1.0
    assert jain_index([0, 0]) == 1.0
    assert jain_index([4, 4, 4]) == 1.0
    assert jain_index([6, 0, 0]) == pytest.approx(1 / 3)
