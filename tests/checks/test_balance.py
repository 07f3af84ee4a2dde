from __future__ import annotations

import json

import pytest

from harness.checks import Thresholds, check_balance, jain_index, sessions_per_pod
from harness.checks.balance import EXACT_SHAPES, FEW_PER_POD, placement_chance
from harness.client.records import Mode, SessionRecord
from harness.stats import MONTE_CARLO_DRAWS, chi_square_sf, multinomial_sf, placement_shapes

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
    # exactly P(Σx² ≥ 150) = 42,766,733 / 3^17 = 0.3312 (chi-square 2.5 on 2 degrees of freedom: 0.2865)
    assert result.figures["chance"] == pytest.approx(42_766_733 / 3**17, rel=1e-10)
    assert result.figures["chance_method"] == "exact"
    result = check_balance(clients_on_pods({"app-0": 11, "app-1": 5, "app-2": 4}), PODS, TH)
    assert result.verdict == "pass", result.reason
    assert result.reason.startswith("uneven as chance makes it: max/mean 1.65 > 1.5")
    # exactly P(Σx² ≥ 162) = 53,658,775 / 3^18 = 0.1385 (chi-square: 12%)
    assert "20 clients placed at random are at least this uneven 14% of the time" in result.reason
    assert "(counted exactly over every placement; held against the topology below 1%)" in result.reason
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
    # Σ votes² = 22.5² + 7.5² = 562.5: whole placements reach it from Σx² = 563 up
    assert result.figures["chance"] == multinomial_sf(563, 30, 3)
    assert result.figures["chance_method"] == "exact"


def test_chance_can_be_switched_off() -> None:
    th = Thresholds(balance_chance=0.0)
    result = check_balance(clients_on_pods({"app-0": 10, "app-1": 5, "app-2": 4}), PODS, th)
    assert result.verdict == "fail"


def test_jain_index() -> None:
    assert jain_index([]) == 1.0
    assert jain_index([0, 0]) == 1.0
    assert jain_index([4, 4, 4]) == 1.0
    assert jain_index([6, 0, 0]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("per_pod", range(1, 11))
def test_an_even_split_of_few_clients_passes(per_pod: int) -> None:
    result = check_balance(clients_on_pods(dict.fromkeys(PODS, per_pod)), PODS, TH)
    assert result.verdict == "pass", result.reason
    assert result.figures["chance"] == 1.0  # every placement is at least as uneven as the most even one
    assert result.figures["chance_method"] == "exact"


@pytest.mark.parametrize("per_pod", range(1, 11))
def test_all_clients_on_one_pod_fail_unless_chance_explains_it(per_pod: int) -> None:
    clients = 3 * per_pod
    result = check_balance(clients_on_pods({"app-0": clients}), PODS, TH)
    assert result.figures["chance"] == pytest.approx(3 * 3.0**-clients, rel=1e-10)  # one of 3 pods for all
    assert result.figures["chance_method"] == "exact"
    if per_pod == 1:  # 3 clients on one pod: 1 run in 9
        assert result.verdict == "pass", result.reason
        assert "3 clients placed at random are at least this uneven 11% of the time" in result.reason
    else:
        assert result.verdict == "fail", result.reason
        assert f"{clients} clients at random: {result.figures['chance']:.2g} chance, exact" in result.reason


@pytest.mark.parametrize("clients", range(3, 31))
def test_all_on_one_pod_of_three_is_put_down_to_chance_up_to_5_clients(clients: int) -> None:
    # 3^(1-n) ≥ 1% up to n = 5 (1/81); 6 clients on one pod happen by chance 1 run in 243
    # (the chi-square approximation, e^-n, failed 5 clients already: 0.67%)
    result = check_balance(clients_on_pods({"app-1": clients}), PODS, TH)
    assert result.verdict == ("pass" if clients <= 5 else "fail"), result.reason


def test_negative_control_ten_clients_per_pod_all_on_one_pod_fail() -> None:
    result = check_balance(clients_on_pods({"app-2": 30}), PODS, TH)
    assert result.verdict == "fail"
    assert result.figures["chance"] == pytest.approx(3.0**-29, rel=1e-10)
    assert result.reason.startswith("unbalanced: 2 idle pods (app-0, app-1); max/mean 3.00 > 1.5; Jain 0.33 < 0.8")


def test_split_votes_are_judged_against_whole_placements_ties_included() -> None:
    # 2 clients stay on app-0, 2 split evenly: votes 3 / 1, a tie with a 3-1 placement, so (2 + 8) / 16
    sticky = clients_on_pods({"app-0": 2}, each=10)
    split = [
        SessionRecord(client=f"s{c}", source="127.0.1.1", mode=Mode.POLLING, started=float(i), pods=[pod])
        for c in range(2)
        for i, pod in enumerate(["app-0", "app-1"] * 5)
    ]
    result = check_balance(sticky + split, ["app-0", "app-1"], TH)
    assert result.figures["clients"] == 4
    assert result.figures["chance"] == pytest.approx(10 / 16, rel=1e-12)
    # votes 2.5 / 1.5 (Σ 8.5): a placement is as uneven from 3-1 (Σ 10) on
    assert placement_chance([2.5, 1.5], 4) == pytest.approx((10 / 16, "exact"))


def test_many_pods_with_few_clients_each_are_judged_by_seeded_monte_carlo() -> None:
    pods = [f"app-{i}" for i in range(20)]
    assert placement_shapes(60, 20) > EXACT_SHAPES
    assert FEW_PER_POD > 60 / 20  # 3 clients per pod
    even = check_balance(clients_on_pods(dict.fromkeys(pods, 3), each=1), pods, TH)
    assert even.verdict == "pass", even.reason
    assert even.figures["chance_method"] == "monte-carlo"
    assert even.figures["chance"] == 1.0
    piled = clients_on_pods({"app-0": 20, "app-1": 20, "app-2": 20}, each=1)
    result = check_balance(piled, pods, TH)
    assert result.verdict == "fail"
    assert result.figures["chance_method"] == "monte-carlo"
    assert result.figures["chance"] == 1 / (MONTE_CARLO_DRAWS + 1)  # no random placement was as uneven
    assert "60 clients at random: 5e-05 chance, monte-carlo" in result.reason
    assert check_balance(piled, pods, TH).figures == result.figures  # seeded: the same verdict every time
    uneven = clients_on_pods({pod: 2 + (i < 4) * 5 for i, pod in enumerate(pods)}, each=1)
    result = check_balance(uneven, pods, TH)
    assert result.verdict == "pass", result.reason
    assert "(estimated from 20,000 seeded random placements; held against" in result.reason


def test_many_clients_on_many_pods_keep_the_chi_square_approximation() -> None:
    pods = [f"app-{i}" for i in range(10)]
    per_pod = {pod: 60 + (i % 2) * 10 - 5 for i, pod in enumerate(pods)}  # 55 / 65 alternating
    result = check_balance(clients_on_pods(per_pod, each=2), pods, TH)
    assert result.figures["chance_method"] == "chi-square"
    assert result.figures["chance"] == pytest.approx(chi_square_sf(10 * 25 / 60, 9), rel=1e-12)
    assert result.verdict == "pass", result.reason
