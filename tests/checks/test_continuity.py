from __future__ import annotations

import json

from harness.checks import Thresholds, check_continuity
from harness.client.records import Mode, SessionRecord

TH = Thresholds()


def session(
    *pods: str,
    client: str = "c1",
    sid: str = "s1",
    mode: Mode = Mode.POLLING,
    sticky_failures: int = 0,
    connected: bool = True,
    upgraded: bool | None = None,
    error: str | None = None,
    disrupted_by: str | None = None,
) -> SessionRecord:
    return SessionRecord(
        client=client,
        source="127.0.1.1",
        mode=mode,
        started=0.0,
        sid=sid,
        pods=list(pods),
        sticky_failures=sticky_failures,
        first_failure="poll 400: Invalid session s1" if sticky_failures else None,
        connected=connected,
        upgraded=upgraded,
        error=error,
        disrupted_by=disrupted_by,
    )


def clean(n: int) -> list[SessionRecord]:
    return [session(f"app-{i % 3}", client=f"c{i}", sid=f"s{i}") for i in range(n)]


def test_sessions_each_served_by_one_pod_pass() -> None:
    sessions = [
        session("app-0", mode=Mode.POLLING),
        session("app-1", mode=Mode.UPGRADE, upgraded=True),
        session("app-2", mode=Mode.WEBSOCKET),
    ]
    result = check_continuity(sessions, TH)
    assert result.verdict == "pass", result.reason
    assert result.figures["judged"] == 3
    assert result.figures["violations"] == 0
    assert result.reason.startswith("0 of 3 judged sessions broke continuity")
    assert result.examples == []


def test_negative_control_a_session_served_by_two_pods_fails() -> None:
    sessions = [*clean(9), session("app-0", "app-2", client="c17", sid="abc")]
    result = check_continuity(sessions, TH)
    assert result.verdict == "fail"
    assert result.figures["violations"] == 1
    assert result.figures["violation_rate"] == 0.1
    assert result.figures["by_reason"]["multi_pod"] == 1
    assert result.examples == ["client c17 session sid=abc: served by 2 pods: app-0, app-2"]
    assert "1 of 10 judged sessions" in result.reason and "10%" in result.reason


def test_negative_control_a_wrong_pod_answer_fails() -> None:
    result = check_continuity([*clean(4), session("app-1", sticky_failures=2)], TH)
    assert result.verdict == "fail"
    assert result.figures["by_reason"] == {"multi_pod": 0, "wrong_pod_answer": 1, "missed_upgrade": 0}
    assert "wrong-pod answer: poll 400: Invalid session s1" in result.examples[0]


def test_negative_control_a_missed_upgrade_fails() -> None:
    sessions = [*clean(4), session("app-1", mode=Mode.UPGRADE, upgraded=None)]
    result = check_continuity(sessions, TH)
    assert result.verdict == "fail"
    assert result.figures["by_reason"]["missed_upgrade"] == 1
    assert result.figures["by_mode"]["upgrade"] == {"judged": 1, "violations": 1}
    assert result.figures["by_mode"]["polling"] == {"judged": 4, "violations": 0}
    assert "upgrade to WebSocket did not happen" in result.examples[0]


def test_a_session_counts_under_its_first_reason_only() -> None:
    both = session("app-0", "app-1", sticky_failures=1, mode=Mode.UPGRADE, upgraded=None)
    result = check_continuity([both], TH)
    assert result.figures["by_reason"] == {"multi_pod": 1, "wrong_pod_answer": 0, "missed_upgrade": 0}
    assert result.figures["violations"] == 1


def test_disrupted_sessions_are_counted_apart_and_not_judged() -> None:
    broken_by_scaling = session("app-0", "app-1", disrupted_by="scale-down app-0", sid="gone")
    result = check_continuity([*clean(5), broken_by_scaling], TH)
    assert result.verdict == "pass", result.reason
    assert result.figures["judged"] == 5
    assert result.figures["disrupted"] == 1
    assert result.figures["disrupted_by_event"] == {"scale-down app-0": 1}
    assert "1 disrupted by the timeline's events" in result.reason


def test_transport_errors_are_reported_but_not_judged() -> None:
    refused = session(connected=False, error="connection refused", client="c9", sid="")
    result = check_continuity([*clean(3), refused], TH)
    assert result.verdict == "pass", result.reason
    assert result.figures["errors"] == 1
    assert result.figures["judged"] == 3
    assert result.figures["error_samples"] == ["client c9 session sid=?: connection refused"]
    assert "1 never reached a pod (first: connection refused)" in result.reason


def test_an_untagged_app_is_judged_from_its_error_responses() -> None:
    # no x-pod header anywhere: no pods, but the session connected, so it is judged, not an error
    ok = session(connected=True)
    bad = session(connected=True, sticky_failures=1)
    result = check_continuity([ok, bad], TH)
    assert result.figures["errors"] == 0
    assert result.figures["judged"] == 2
    assert result.verdict == "fail"


def test_a_sticky_failure_without_any_pod_is_judged_not_an_error() -> None:
    result = check_continuity([session(connected=False, sticky_failures=1)], TH)
    assert result.figures["errors"] == 0
    assert result.verdict == "fail"


def test_nothing_judged_is_not_applicable() -> None:
    assert check_continuity([], TH).verdict == "n/a"
    assert check_continuity([], TH).reason == "no sessions were recorded"
    only_set_apart = [session(connected=False, error="timed out"), session("app-0", disrupted_by="kill app-0")]
    result = check_continuity(only_set_apart, TH)
    assert result.verdict == "n/a"
    assert "none of 2 sessions could be judged" in result.reason
    assert "1 disrupted" in result.reason and "1 never reached a pod" in result.reason


def test_an_allowed_violation_rate_is_respected() -> None:
    th = Thresholds(max_violation_rate=0.1)
    one_bad = [*clean(19), session("app-0", "app-1")]
    assert check_continuity(one_bad, th).verdict == "pass"
    three_bad = [*clean(17), *(session("app-0", "app-1") for _ in range(3))]
    assert check_continuity(three_bad, th).verdict == "fail"


def test_examples_are_capped_and_show_every_kind() -> None:
    sessions = [session("app-0", "app-1", sid=f"m{i}") for i in range(10)]
    sessions += [session("app-0", sticky_failures=1, sid=f"w{i}") for i in range(10)]
    sessions += [session("app-0", mode=Mode.UPGRADE, sid=f"u{i}") for i in range(10)]
    result = check_continuity(sessions, TH)
    assert len(result.examples) == 5
    sids = [e.split("sid=")[1][0] for e in result.examples]
    assert set(sids) == {"m", "w", "u"}
    assert result.figures["violations"] == 30


def test_figures_are_json_serialisable() -> None:
    sessions = [*clean(3), session("a", "b"), session(connected=False, error="x"), session("a", disrupted_by="e")]
    json.dumps(check_continuity(sessions, TH).to_json())
