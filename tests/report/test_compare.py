"""compare_runs: each kind of regression is found in a run built to regress, none in an identical or improved
run (the negative control, both ways), noise within the tolerances is not a regression, and runs that do not
compare are refused. compare_dirs: the runs of two reports directories pair by what they ran, a regression in any
pair is found, runs without a partner and older duplicates are listed, and directories that hold no comparable
run are refused."""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.report.compare import PairKey, Tolerances, compare_dirs, compare_runs, load_summary, pair_key
from tests.report.reports_dirs import (
    KIND_IPVS,
    NEGATIVE,
    PAIRS,
    RUNS,
    SCALING,
    SEED,
    copy_run,
    edit_summary,
    next_id,
    plant_regression,
)

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


# --- reports directories: the nightly job's `harness compare baseline reports` --------------------------------


def _lines_of(text: str, run_id: str) -> list[str]:
    return [line for line in text.splitlines() if run_id in line]


def cells(row: str) -> list[str]:
    """The columns of a row of the table (two spaces or more between columns, one within)."""
    return re.split(r"\s{2,}", row)


def test_two_reports_directories_pair_their_runs_by_what_they_ran(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    result = compare_dirs(baseline, reports)
    assert result.exit_code == 0 and not result.regressed
    assert {p.baseline.run_id: p.run.run_id for p in result.pairs} == {name: next_id(name) for name in RUNS}
    assert {p.baseline.run_id: p.key.text for p in result.pairs} == PAIRS
    # latest, .clusters/ and the second name of a run are no runs of their own
    assert not result.only_in_baseline and not result.only_in_run and not result.ignored and not result.skipped
    text = result.render_text()
    for name in RUNS:
        (row,) = _lines_of(text, next_id(name))
        assert cells(row) == [PAIRS[name], name, next_id(name), *[cells(row)[3]] * 2, "0", "-"]
    assert text.splitlines()[0] == f"compare {reports} against baseline {baseline}: 6 pairs of runs"
    assert text.endswith("no regression in 6 pairs") and "REGRESSION" not in text
    assert json.loads(json.dumps(result.to_json()))["regressed"] is False


def test_a_regression_in_one_pair_is_a_regression_of_the_directory(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    plant_regression(reports / next_id(SEED))
    result = compare_dirs(baseline, reports)
    assert result.exit_code == 1
    (regressed,) = [p for p in result.pairs if p.comparison.regressed]
    assert regressed.baseline.run_id == SEED and regressed.run.verdict == "differs from expected"
    assert [c.subject for c in result.regressions] == ["continuity verdict", "continuity violation_rate"]
    text = result.render_text()
    (row,) = [cells(line) for line in _lines_of(text, next_id(SEED)) if line.startswith(PAIRS[SEED])]
    assert row[1:6] == [SEED, next_id(SEED), "as expected", "differs from expected", "2"]
    assert row[6].startswith("continuity: pass → fail, now differs from the expected pass")
    detail = text.split("\nregressions:\n", 1)[1]
    assert detail.startswith(f"  {PAIRS[SEED]}:\n    compare {next_id(SEED)} against baseline {SEED}")
    assert "    REGRESSION  continuity: violations 0% → 2%" in detail
    assert text.endswith("2 regressions in 1 of 6 pairs")
    assert json.loads(json.dumps(result.to_json()))["regressed"] is True


def test_a_kind_run_pairs_only_with_the_same_kube_proxy_mode(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    plant_regression(reports / next_id(KIND_IPVS))
    result = compare_dirs(baseline, reports)
    (regressed,) = [p for p in result.pairs if p.comparison.regressed]
    assert (regressed.baseline.run_id, regressed.key.kube_proxy_mode) == (KIND_IPVS, "ipvs")


def test_runs_without_a_partner_are_listed_and_are_no_regression(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    shutil.rmtree(reports / next_id(SCALING))
    new = copy_run(reports / next_id(SEED), reports, "20240102-000900-seed-9999", case="test_new_case")
    result = compare_dirs(baseline, reports)
    assert result.exit_code == 0 and len(result.pairs) == 5
    assert [r.run_id for r in result.only_in_baseline] == [SCALING]
    assert [r.run_id for r in result.only_in_run] == [new.name]
    text = result.render_text()
    assert f"only in baseline: {SCALING} ({PAIRS[SCALING]})" in text.splitlines()
    assert f"only in run: {new.name} (seed, local, unique addresses, case test_new_case)" in text.splitlines()


def test_the_newest_of_runs_with_one_key_is_compared_and_the_others_are_listed(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    # the run side ran the seed case twice: the earlier one (by start time, not by name) regressed
    older = copy_run(reports / next_id(SEED), reports, "20240102-235900-seed-0000", later_s=-60)
    plant_regression(older)
    result = compare_dirs(baseline, reports)
    assert result.exit_code == 0
    (seed,) = [p for p in result.pairs if p.baseline.run_id == SEED]
    assert seed.run.run_id == next_id(SEED)
    assert [(side, left.run_id, used.run_id) for side, left, used in result.ignored] == [
        ("run", older.name, next_id(SEED))
    ]
    expected = f"ignored (run): {older.name}, older than {next_id(SEED)} with the same key ({PAIRS[SEED]})"
    assert expected in result.render_text().splitlines()
    # the newer one regressed: that is the one compared
    newer = copy_run(reports / next_id(SEED), reports, "20240102-000000-seed-ffff", later_s=60)
    plant_regression(newer)
    result = compare_dirs(baseline, reports)
    assert result.exit_code == 1 and [p.run.run_id for p in result.pairs if p.comparison.regressed] == [newer.name]
    assert {left.run_id for _, left, _ in result.ignored} == {older.name, next_id(SEED)}


def test_duplicates_in_the_baseline_are_settled_the_same_way(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    newer = copy_run(baseline / SEED, baseline, "20240101-120000-seed-5555", later_s=3600)
    result = compare_dirs(baseline, reports)
    (seed,) = [p for p in result.pairs if p.key.text == PAIRS[SEED]]
    assert seed.baseline.run_id == newer.name
    assert [(side, left.run_id) for side, left, _ in result.ignored] == [("baseline", SEED)]


def test_a_run_directory_against_a_reports_directory_is_a_directory_of_one_run(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    plant_regression(reports / next_id(SEED))
    result = compare_dirs(baseline / SEED, reports)
    assert [p.run.run_id for p in result.pairs] == [next_id(SEED)] and result.exit_code == 1
    assert len(result.only_in_run) == len(RUNS) - 1 and not result.only_in_baseline
    result = compare_dirs(baseline, reports / next_id(NEGATIVE))
    assert [p.baseline.run_id for p in result.pairs] == [NEGATIVE] and result.exit_code == 0


def test_the_pair_key_names_the_case_or_else_the_shape_of_the_run() -> None:
    s = good()
    key = pair_key(s)
    assert key == PairKey("nginx-hash", "local", None, "unique", None, ("30s scale app 5",), 0.0)
    assert pair_key({**s, "session_length_s": None}) == pair_key({**s, "session_length_s": 0}) == key
    assert pair_key({**s, "session_length_s": 30}).text.endswith("events 30s scale app 5, sessions of 30s")
    assert pair_key({**s, "events": []}) != key
    # a named case pairs whatever the timeline; the kube-proxy mode and the client addresses always count
    assert pair_key({**s, "case": "t", "events": []}) == pair_key({**s, "case": "t"})
    assert pair_key({**s, "kube_proxy_mode": "ipvs"}) != pair_key({**s, "kube_proxy_mode": "iptables"})
    assert pair_key({**s, "client_addresses": "shared"}) != key
    assert pair_key({**s, "client_addresses": "unique"}) == key


def test_directories_that_hold_no_run_do_not_compare(nights: tuple[Path, Path], tmp_path: Path) -> None:
    baseline, _ = nights
    empty = tmp_path / "empty"
    (empty / "not-a-run").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"is neither a run directory .* nor a reports directory"):
        compare_dirs(baseline, empty)
    with pytest.raises(UsageError, match="is not a directory"):
        compare_dirs(baseline, tmp_path / "missing")


def test_an_unreadable_summary_is_named(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    broken = reports / next_id(NEGATIVE) / "summary.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(UsageError, match=f"^{re.escape(str(broken))} is not valid JSON"):
        compare_dirs(baseline, reports)
    broken.write_text("[]", encoding="utf-8")
    with pytest.raises(UsageError, match=f"^{re.escape(str(broken))} is not a run summary"):
        compare_dirs(baseline, reports)


def test_directories_with_no_run_in_common_do_not_compare(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    with pytest.raises(UsageError, match=r"^nothing to compare: no run in .* ran what a run in"):
        compare_dirs(baseline / SEED, reports / next_id(NEGATIVE))


def test_a_pair_of_other_schemas_does_not_compare(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    edit_summary(reports / next_id(SEED), schema=99)
    with pytest.raises(UsageError, match=rf"{next_id(SEED)} .*do not compare: the summaries have schemas"):
        compare_dirs(baseline, reports)


def test_subdirectories_without_a_summary_are_listed_as_skipped(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    (reports / "20240102-010000-seed-7777").mkdir()
    result = compare_dirs(baseline, reports)
    assert result.exit_code == 0 and result.skipped == [reports / "20240102-010000-seed-7777"]
    assert f"skipped: {reports / '20240102-010000-seed-7777'} (no summary.json)" in result.render_text()
