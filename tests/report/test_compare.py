"""compare_runs: each kind of regression is found in a run built to regress, none in an identical or improved
run (the negative control, both ways), noise within the tolerances is not a regression, and runs that do not
compare are refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.report.compare import Tolerances, compare_runs, load_summary

Summary = dict[str, Any]


def good() -> Summary:
    return {
        "schema": 1,
        "run_id": "baseline",
        "topology": "nginx-hash",
        "backend": "local",
        "sessions": 1000,
        "checks": {
            "continuity": {
                "measured": "pass",
                "expected": "pass",
                "matches": True,
                "reason": "0 of 1000 judged sessions broke continuity",
                "figures": {"judged": 1000, "violations": 0, "violation_rate": 0.0},
            },
            "affinity": {
                "measured": "pass",
                "expected": "pass",
                "matches": True,
                "reason": "all 40 judged clients stayed on one pod",
                "figures": {"judged": 40, "broken": 0, "broken_rate": 0.0},
            },
            "balance": {  # expected n/a: a topology that asserts nothing about balance
                "measured": "pass",
                "expected": "n/a",
                "matches": True,
                "reason": "even",
                "figures": {"jain": 0.98, "max_mean_ratio": 1.1},
            },
        },
        "latency_ms": {
            "handshake": {"count": 1000, "p50": 3.0, "p90": 6.0, "p99": 10.0, "max": 20.0},
            "upgrade": {"count": 900, "p50": 2.0, "p90": 5.0, "p99": 9.0, "max": 15.0},
        },
        "events": [{"id": "e1", "label": "30s scale app 5", "disrupted_sessions": 0, "remap_excess": 0, "error": None}],
    }


def _check(s: Summary, name: str) -> dict[str, Any]:
    check: dict[str, Any] = s["checks"][name]
    return check


def _verdict_fails(s: Summary) -> None:
    _check(s, "continuity").update(measured="fail", matches=False)


def _unasserted_fails(s: Summary) -> None:
    _check(s, "balance").update(measured="fail")


def _violations_up(s: Summary) -> None:
    _check(s, "continuity")["figures"].update(violations=1, violation_rate=0.001)


def _affinity_down(s: Summary) -> None:
    _check(s, "affinity")["figures"].update(broken=2, broken_rate=0.05)


def _latency_up(s: Summary) -> None:
    s["latency_ms"]["handshake"]["p99"] = 20.0


def _jain_down(s: Summary) -> None:
    _check(s, "balance")["figures"]["jain"] = 0.85


def _ratio_up(s: Summary) -> None:
    _check(s, "balance")["figures"]["max_mean_ratio"] = 1.4


def _check_missing(s: Summary) -> None:
    del s["checks"]["balance"]


REGRESSIONS: dict[str, tuple[Callable[[Summary], None], str]] = {
    "verdict now differs from expected": (_verdict_fails, "continuity verdict"),
    "pass to fail of an unasserted check": (_unasserted_fails, "balance verdict"),
    "violations up from zero": (_violations_up, "continuity violation_rate"),
    "clients moving": (_affinity_down, "affinity broken_rate"),
    "p99 handshake latency": (_latency_up, "handshake p99"),
    "Jain index down": (_jain_down, "balance jain"),
    "busiest pod up": (_ratio_up, "balance max_mean_ratio"),
    "check missing": (_check_missing, "balance verdict"),
}


def regressed_by(change: Callable[[Summary], None]) -> Summary:
    s = copy.deepcopy(good())
    s["run_id"] = "run"
    change(s)
    return s


def test_an_identical_run_has_no_change() -> None:
    result = compare_runs(good(), good())
    assert not result.regressed and result.worse == [] and result.better == [] and result.exit_code == 0
    assert result.render_text().endswith("no regression")


@pytest.mark.parametrize("kind", list(REGRESSIONS))
def test_each_kind_of_regression_is_found(kind: str) -> None:
    change, subject = REGRESSIONS[kind]
    result = compare_runs(good(), regressed_by(change))
    assert result.regressed and result.exit_code == 1
    assert [c.subject for c in result.regressions] == [subject]
    assert "REGRESSION" in result.render_text()


@pytest.mark.parametrize("kind", list(REGRESSIONS))
def test_the_other_way_round_is_no_regression(kind: str) -> None:
    change, _ = REGRESSIONS[kind]
    result = compare_runs(regressed_by(change), good())
    assert not result.regressed
    if kind != "check missing":
        assert result.better, "an improvement is listed as better"


def test_everything_worse_at_once_lists_every_regression() -> None:
    def everything(s: Summary) -> None:
        for change, _ in REGRESSIONS.values():
            if change is not _check_missing:
                change(s)

    bad = regressed_by(everything)
    subjects = {c.subject for c in compare_runs(good(), bad).regressions}
    assert subjects == {subject for _, subject in REGRESSIONS.values()}


@pytest.mark.parametrize(
    ("baseline_p99", "run_p99"),
    [(4.0, 6.0), (100.0, 110.0), (10.0, 9.0)],
    ids=["+50% but only 2 ms", "+10 ms but only 10%", "faster"],
)
def test_latency_noise_is_not_a_regression(baseline_p99: float, run_p99: float) -> None:
    base, run = good(), good()
    base["latency_ms"]["handshake"]["p99"] = baseline_p99
    run["latency_ms"]["handshake"]["p99"] = run_p99
    result = compare_runs(base, run)
    assert not result.regressed and not result.worse


def test_the_latency_threshold_and_floor_are_settings() -> None:
    run = regressed_by(_latency_up)  # 10 → 20 ms: +100 %, +10 ms
    assert not compare_runs(good(), run, latency_threshold=1.5).regressed
    assert not compare_runs(good(), run, tolerances=Tolerances(latency_floor_ms=15)).regressed
    assert compare_runs(good(), run, latency_threshold=0.5).regressed
    with pytest.raises(UsageError):
        Tolerances(latency_threshold=-1)


def test_other_latencies_and_events_are_listed_but_do_not_regress() -> None:
    def change(s: Summary) -> None:
        s["latency_ms"]["upgrade"]["p99"] = 30.0
        s["events"][0].update(disrupted_sessions=4, remap_excess=3, error="scale timed out")

    result = compare_runs(good(), regressed_by(change))
    assert not result.regressed
    assert {c.subject for c in result.worse} == {
        "upgrade p99",
        "event 30s scale app 5 disrupted_sessions",
        "event 30s scale app 5 remap_excess",
        "event 30s scale app 5",
    }


def test_a_small_rise_of_an_already_high_violation_rate_is_within_tolerance() -> None:
    base, run = good(), good()
    _check(base, "continuity")["figures"]["violation_rate"] = 0.300
    _check(run, "continuity")["figures"]["violation_rate"] = 0.305
    result = compare_runs(base, run)
    assert not result.regressed and [c.subject for c in result.worse] == ["continuity violation_rate"]
    _check(run, "continuity")["figures"]["violation_rate"] = 0.35
    assert compare_runs(base, run).regressed


def test_a_negative_control_now_failing_as_expected_is_better() -> None:
    base, run = good(), good()
    for s, verdict in ((base, "pass"), (run, "fail")):
        _check(s, "continuity").update(expected="fail", measured=verdict, matches=verdict == "fail")
    result = compare_runs(base, run)
    assert not result.regressed and [c.subject for c in result.better] == ["continuity verdict"]
    assert compare_runs(run, base).regressed


def test_runs_of_other_topologies_or_schemas_do_not_compare() -> None:
    other = good()
    other["topology"] = "seed"
    with pytest.raises(UsageError, match="same topology"):
        compare_runs(good(), other)
    newer = good()
    newer["schema"] = 2
    with pytest.raises(UsageError, match="schemas"):
        compare_runs(good(), newer)


def test_summaries_load_from_a_run_directory_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(good()), encoding="utf-8")
    assert load_summary(tmp_path) == load_summary(tmp_path / "summary.json") == good()
    assert not compare_runs(tmp_path, tmp_path / "summary.json").regressed
    with pytest.raises(UsageError, match="harness report"):
        load_summary(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_summary(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[]", encoding="utf-8")
    with pytest.raises(UsageError, match="not a run summary"):
        load_summary(tmp_path / "other.json")
