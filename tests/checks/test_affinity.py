from __future__ import annotations

import json
import random
from collections.abc import Sequence

from harness.checks import Thresholds, check_affinity, client_histories
from harness.client.records import Mode, SessionRecord

TH = Thresholds()


def history(client: str, pods: Sequence[str | None], disrupted_at: int | None = None) -> list[SessionRecord]:
    """One session per entry, started one second apart; None: a session that reached no pod."""
    return [
        SessionRecord(
            client=client,
            source="127.0.1.1",
            mode=Mode.POLLING,
            started=float(i),
            sid=f"{client}-{i}",
            pods=[pod] if pod else [],
            connected=pod is not None,
            disrupted_by="scale-down" if i == disrupted_at else None,
        )
        for i, pod in enumerate(pods)
    ]


def steady(client: str, pod: str, n: int = 15) -> list[SessionRecord]:
    return history(client, [pod] * n)


def test_clients_that_stay_on_their_pod_hold() -> None:
    sessions = steady("c1", "app-0") + steady("c2", "app-1", 20) + steady("c3", "app-2")
    result = check_affinity(sessions, TH)
    assert result.verdict == "pass", result.reason
    assert (result.figures["judged"], result.figures["held"], result.figures["broken"]) == (3, 3, 0)
    assert result.figures["sessions_per_client"] == {"min": 15, "median": 15, "max": 20}
    assert "all 3 judged clients" in result.reason


def test_negative_control_a_client_hopping_between_pods_is_broken() -> None:
    hopper = history("c7", ["app-0", "app-1"] * 8)
    result = check_affinity(steady("c1", "app-0") + hopper, TH)
    assert result.verdict == "fail"
    assert result.figures["broken"] == 1
    assert result.figures["broken_rate"] == 0.5
    assert result.figures["broken_by_distinct_pods"] == {"2": 1}
    assert result.figures["moves"] == 15
    assert result.examples == [
        "client c7: 16 sessions on 2 pods (app-0 x8, app-1 x8); 15 unexcused moves, first at session 2: app-0 → app-1"
    ]
    assert "1 of 2 judged clients moved between pods" in result.reason


def test_a_single_move_and_back_breaks_affinity() -> None:
    pods = ["app-0"] * 10 + ["app-1"] + ["app-0"] * 5
    result = check_affinity(history("c1", pods), TH)
    assert result.verdict == "fail"
    assert result.figures["moves"] == 2


def test_too_few_sessions_per_client_is_not_applicable() -> None:
    result = check_affinity(steady("c1", "app-0", 14) + history("c2", ["app-0", "app-1"] * 3), TH)
    assert result.verdict == "n/a"
    assert result.figures["judged"] == 0
    assert "no client had 15 sessions" in result.reason
    assert "the most any client had was 14" in result.reason


def test_many_clients_with_few_sessions_each_are_judged_at_the_long_session_run_both_ways() -> None:
    """A short run with many clients (none reaches 15 sessions): 30 clients of 3 sessions each are judged as long
    sessions are, and a chain that moves them fails; 29 such clients stay n/a, as does one client at 15 next to them
    judged alone (no fallback then)."""
    pods = ["app-0", "app-1", "app-2"]
    sticky = [r for i in range(30) for r in steady(f"c{i}", pods[i % 3], 3)]
    held = check_affinity(sticky, TH)
    assert held.verdict == "pass" and held.figures["fallback"] and held.figures["affinity_run"] == 3
    assert held.figures["judged"] == 30
    assert "no client had 15 sessions, so the 30 clients with 3 or more were judged" in held.reason
    rng = random.Random(5)
    moving = [r for i in range(30) for r in history(f"c{i}", [rng.choice(pods) for _ in range(4)])]
    moved = check_affinity(moving, TH)
    assert moved.verdict == "fail" and moved.figures["fallback"] and moved.figures["broken"] > 15
    few = check_affinity(sticky[: 29 * 3], TH)
    assert few.verdict == "n/a" and not few.figures["fallback"]
    one_long = check_affinity(sticky + steady("long", "app-0", 15), TH)
    assert one_long.figures["judged"] == 1 and not one_long.figures["fallback"]


def test_too_few_judged_clients_is_not_applicable() -> None:
    th = Thresholds(min_affinity_clients=2)
    result = check_affinity(steady("c1", "app-0") + steady("c2", "app-0", 3), th)
    assert result.verdict == "n/a"
    assert "only 1 clients had 15 sessions" in result.reason
    assert "2 judged clients needed" in result.reason


def test_a_move_after_a_disrupted_session_is_not_counted() -> None:
    pods = ["app-0"] * 8 + ["app-1"] * 8
    result = check_affinity(history("c1", pods, disrupted_at=7), TH)
    assert result.verdict == "pass", result.reason
    assert result.figures["excused_moves"] == 1
    assert "not counting 1 moves after a session an event broke or off a removed pod" in result.reason


def test_a_move_away_from_a_removed_pod_is_not_counted() -> None:
    sessions = history("c1", ["app-2"] * 8 + ["app-0"] * 8)
    assert check_affinity(sessions, TH).verdict == "fail"  # the control: the same move, nothing removed
    result = check_affinity(sessions, TH, removed_pods={"app-2"})
    assert result.verdict == "pass", result.reason
    assert result.figures["excused_moves"] == 1


def test_a_move_away_from_a_pod_that_stayed_still_counts_when_another_was_removed() -> None:
    sessions = history("c1", ["app-0"] * 8 + ["app-1"] * 8)
    assert check_affinity(sessions, TH, removed_pods={"app-1"}).verdict == "fail"


def test_a_move_onto_a_pod_added_during_the_run_is_not_counted_but_a_move_back_is() -> None:
    # a scale-up: consistent hashing hands c1 to the new app-3; c2 then flaps back to its old pod
    rebalanced = history("c1", ["app-0"] * 8 + ["app-3"] * 8)
    flapping = history("c2", ["app-1"] * 8 + ["app-3"] * 4 + ["app-1"] * 4)
    result = check_affinity(rebalanced + flapping, TH, added_pods=["app-3"])
    assert result.verdict == "fail"
    assert (result.figures["held"], result.figures["broken"]) == (1, 1)
    assert result.figures["moves_onto_added_pods"] == 2
    assert "not counting 2 moves onto pods added during the run" in result.reason
    assert result.examples[0].startswith("client c2:") and "app-3 → app-1" in result.examples[0]
    # negative control: without the scale-up, the same move is an affinity break
    assert check_affinity(rebalanced, TH).verdict == "fail"
    assert check_affinity(rebalanced, TH, added_pods=["app-3"]).verdict == "pass"


def test_a_move_between_pods_that_were_there_counts_on_a_scale_up() -> None:
    # a modulo hash moves clients between old pods when a pod is added: not excused by the new pod
    sessions = history("c1", ["app-0"] * 8 + ["app-1"] * 8)
    assert check_affinity(sessions, TH, added_pods=["app-3"]).verdict == "fail"


def test_sessions_are_judged_in_start_order_not_list_order() -> None:
    sessions = history("c1", ["app-0"] * 8 + ["app-1"] * 8, disrupted_at=7)
    random.Random(4).shuffle(sessions)
    assert check_affinity(sessions, TH).verdict == "pass"
    assert client_histories(sessions)["c1"].pods == ("app-0",) * 8 + ("app-1",) * 8


def test_sessions_that_reached_no_pod_neither_break_nor_count() -> None:
    pods: list[str | None] = ["app-0"] * 7 + [None] + ["app-0"] * 7
    result = check_affinity(history("c1", pods), TH)
    assert result.verdict == "n/a"  # 14 sessions with a pod: not enough
    pods.append("app-0")
    result = check_affinity(history("c1", pods), TH)
    assert result.verdict == "pass"
    assert result.figures["clients"] == 1


def test_an_allowed_broken_rate_is_respected() -> None:
    th = Thresholds(max_affinity_broken_rate=0.5)
    sessions = steady("c1", "app-0") + steady("c2", "app-1") + history("c3", ["app-0", "app-2"] * 8)
    assert check_affinity(sessions, th).verdict == "pass"
    assert check_affinity(sessions, TH).verdict == "fail"


def test_examples_put_the_widest_spread_first_and_are_capped() -> None:
    sessions = [s for i in range(8) for s in history(f"h{i}", ["app-0", "app-1"] * 8)]
    sessions += history("wide", ["app-0", "app-1", "app-2"] * 6)
    result = check_affinity(sessions, TH)
    assert len(result.examples) == 5
    assert result.examples[0].startswith("client wide: 18 sessions on 3 pods")
    assert result.figures["broken_by_distinct_pods"] == {"2": 8, "3": 1}
    json.dumps(result.to_json())


def test_unjudged_clients_that_already_moved_are_counted_as_a_hint() -> None:
    result = check_affinity(history("c1", ["app-0", "app-1"] * 3) + steady("c2", "app-0", 4), TH)
    assert result.verdict == "n/a"
    assert result.figures["unjudged_clients_that_moved"] == 1
