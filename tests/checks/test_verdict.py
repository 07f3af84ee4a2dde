from __future__ import annotations

import json

import pytest

from harness.checks import CheckResult, Thresholds, coincidence_note, compare, evaluate
from harness.client.records import Mode, SessionRecord
from harness.errors import UsageError

PODS = ["app-0", "app-1", "app-2"]


def session(client: str, started: float, *pods: str, sticky_failures: int = 0) -> SessionRecord:
    return SessionRecord(
        client=client,
        source="127.0.1.1",
        mode=Mode.POLLING,
        started=started,
        sid=f"{client}-{started:g}",
        pods=list(pods),
        connected=True,
        sticky_failures=sticky_failures,
    )


def on_one_pod(pod: str, clients: int = 4, each: int = 15) -> list[SessionRecord]:
    return [session(f"c{c}", float(i), pod) for c in range(clients) for i in range(each)]


def result(name: str, verdict: str, notes: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(name, verdict, f"{name} was {verdict}", notes=list(notes))  # type: ignore[arg-type]


def test_evaluate_runs_every_check_in_display_order() -> None:
    sessions = [session(f"c{c}", float(i), PODS[c % 3]) for c in range(6) for i in range(15)]
    results = evaluate(sessions, PODS, Thresholds())
    assert list(results) == ["continuity", "affinity", "balance"]
    assert {name: r.verdict for name, r in results.items()} == {
        "continuity": "pass",
        "affinity": "pass",
        "balance": "pass",
    }
    assert results["continuity"].notes == []


def test_evaluate_passes_removed_pods_to_affinity() -> None:
    sessions = [session("c1", float(i), "app-2" if i < 8 else "app-0") for i in range(16)]
    assert evaluate(sessions, PODS, Thresholds())["affinity"].verdict == "fail"
    assert evaluate(sessions, PODS, Thresholds(), removed_pods=["app-2"])["affinity"].verdict == "pass"


def test_a_continuity_pass_on_a_single_pod_of_several_carries_the_luck_note() -> None:
    results = evaluate(on_one_pod("app-1", clients=8), PODS, Thresholds())
    assert results["continuity"].verdict == "pass"
    assert results["balance"].verdict == "fail"
    assert results["continuity"].notes == [
        "every session was served by app-1 of 3 pods: a pass that rests on all chains converging on one pod; "
        "re-run with other seeds"
    ]


def test_no_luck_note_when_continuity_fails() -> None:
    sessions = [*on_one_pod("app-1"), session("bad", 0.0, "app-1", sticky_failures=1)]
    results = evaluate(sessions, PODS, Thresholds())
    assert results["continuity"].verdict == "fail"
    assert results["continuity"].notes == []


def test_coincidence_note_only_when_one_pod_of_several_served_everything() -> None:
    assert coincidence_note(on_one_pod("app-1"), PODS) is not None
    assert coincidence_note(on_one_pod("app-1"), ["app-1"]) is None  # one pod: nothing else to land on
    assert coincidence_note(on_one_pod("app-1"), []) is None
    assert coincidence_note(on_one_pod("app-7"), ["app-0"]) is not None  # an unlisted pod still counts
    two = [*on_one_pod("app-1"), session("x", 0.0, "app-0")]
    assert coincidence_note(two, PODS) is None
    assert coincidence_note([session("x", 0.0, "app-0")], PODS) is None  # one session proves nothing
    assert coincidence_note([], PODS) is None


def test_compare_all_matching_is_ok() -> None:
    measured = {"continuity": result("continuity", "fail"), "affinity": result("affinity", "pass")}
    outcome = compare(measured, {"continuity": "fail", "affinity": "pass"})
    assert outcome.ok
    assert outcome.mismatches == []
    assert outcome.render_text().splitlines()[-1] == "as expected"


def test_compare_a_mismatch_is_not_ok() -> None:
    measured = {"continuity": result("continuity", "pass"), "balance": result("balance", "pass")}
    outcome = compare(measured, {"continuity": "fail", "balance": "pass"})
    assert not outcome.ok
    assert [c.name for c in outcome.mismatches] == ["continuity"]
    assert outcome.checks["continuity"].matches is False
    assert outcome.checks["balance"].matches is True


def test_compare_expected_na_or_missing_asserts_nothing() -> None:
    measured = {
        "continuity": result("continuity", "fail"),
        "affinity": result("affinity", "n/a"),
        "balance": result("balance", "pass"),
    }
    outcome = compare(measured, {"continuity": "n/a"})
    assert outcome.ok
    assert all(not c.asserted for c in outcome.checks.values())
    assert outcome.checks["affinity"].expected is None


def test_compare_a_measured_na_matches_only_an_expected_na() -> None:
    measured = {"affinity": result("affinity", "n/a")}
    assert compare(measured, {"affinity": "n/a"}).ok
    assert not compare(measured, {"affinity": "pass"}).ok
    assert not compare(measured, {"affinity": "fail"}).ok


def test_compare_an_expected_check_that_was_not_measured_does_not_match() -> None:
    outcome = compare({}, {"balance": "fail"})
    assert not outcome.ok
    assert outcome.checks["balance"].measured == "n/a"
    assert outcome.checks["balance"].reason == "not measured in this run"


def test_compare_refuses_an_unknown_expected_verdict() -> None:
    with pytest.raises(UsageError, match="'continuity' is 'ok'"):
        compare({}, {"continuity": "ok"})


def test_render_text_is_a_table_with_notes_and_the_outcome() -> None:
    measured = {
        "continuity": result("continuity", "pass", ("every session was served by app-1 of 3 pods: …",)),
        "affinity": result("affinity", "n/a"),
        "balance": result("balance", "pass"),
    }
    outcome = compare(measured, {"continuity": "fail", "balance": "pass"})
    lines = outcome.render_text().splitlines()
    assert lines[0].split() == ["check", "measured", "expected", "match", "reason"]
    assert lines[1].split()[:4] == ["continuity", "pass", "fail", "NO"]
    assert lines[1].endswith("continuity was pass")
    assert lines[2].split()[:4] == ["affinity", "n/a", "-", "-"]
    assert lines[3].split()[:4] == ["balance", "pass", "pass", "yes"]
    column = lines[0].index("reason")  # reasons line up
    assert [line[column:] for line in lines[1:4]] == ["continuity was pass", "affinity was n/a", "balance was pass"]
    assert lines[4] == "note: every session was served by app-1 of 3 pods: …"
    assert lines[5] == "NOT as expected: continuity pass (expected fail)"
    json.dumps(outcome.to_json())
    assert outcome.to_json()["ok"] is False
