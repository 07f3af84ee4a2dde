"""``harness report`` and ``harness compare`` through click: what they write, what they print, and their exit
codes (0 done / no regression, 1 regression, 2 usage error), for run directories and for reports directories."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.report.cli import compare_command, report_command
from tests.report import empty_run, lucky_run, scaling_run
from tests.report.reports_dirs import (
    KIND_IPVS,
    PAIRS,
    RUNS,
    SCALING,
    SEED,
    SEED_SHARED,
    copy_run,
    next_id,
    plant_regression,
)


def _report(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(report_command, list(args))
    return result.exit_code, result.output


def _compare(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(compare_command, list(args))
    return result.exit_code, result.output


def test_report_rebuilds_the_page_and_junit_of_a_run_directory(tmp_path: Path) -> None:
    run_dir = scaling_run(tmp_path)
    code, out = _report(str(run_dir))
    assert code == 0, out
    assert f"report: {run_dir / 'report.html'}" in out
    assert (run_dir / "report.html").is_file() and (run_dir / "junit.xml").is_file()


def test_report_finds_a_run_by_id_and_latest(tmp_path: Path) -> None:
    lucky = lucky_run(tmp_path)
    scaling = scaling_run(tmp_path)  # judged last: reports/latest
    code, out = _report(lucky.name, "--reports-dir", str(tmp_path))
    assert code == 0 and str(lucky / "report.html") in out
    code, out = _report("latest", "--reports-dir", str(tmp_path))
    assert code == 0 and str(scaling / "report.html") in out


def test_report_of_no_such_run_is_a_usage_error(tmp_path: Path) -> None:
    code, out = _report("nope", "--reports-dir", str(tmp_path))
    assert code == 2 and "no run 'nope'" in out
    code, out = _report("latest", "--reports-dir", str(tmp_path))
    assert code == 2 and "no run has been judged" in out


def test_report_judges_a_run_without_summary_and_leaves_latest_alone(tmp_path: Path) -> None:
    old = lucky_run(tmp_path, name="20240101-000000-nginx-hash-old")
    newest = empty_run(tmp_path)
    (old / "summary.json").unlink()
    latest_before = os.readlink(tmp_path / "latest")
    code, out = _report(str(old))
    assert code == 2 and "--topology" in out
    code, out = _report(str(old), "--topology", "seed")
    assert code == 0, out
    assert "judged 20240101-000000-nginx-hash-old: differs from expected" in out
    summary = json.loads((old / "summary.json").read_text())
    assert summary["topology"] == "seed" and summary["pods"] == ["app-0"]  # only the pods the sessions reached
    assert os.readlink(tmp_path / "latest") == latest_before and Path(latest_before).name == newest.name


def test_report_takes_what_records_cannot_tell_from_the_cluster_state(tmp_path: Path) -> None:
    run_dir = lucky_run(tmp_path)
    (run_dir / "summary.json").unlink()
    state = {"topology": "seed", "backend": "local", "seed": 42, "app_pods": [{"name": f"app-{i}"} for i in range(3)]}
    (run_dir / "cluster.json").write_text(json.dumps(state), encoding="utf-8")
    code, out = _report(str(run_dir))
    assert code == 0, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seed"] == 42 and summary["pods"] == ["app-0", "app-1", "app-2"]


def test_rejudge_keeps_what_the_run_was_told(tmp_path: Path) -> None:
    run_dir = scaling_run(tmp_path)
    before = json.loads((run_dir / "summary.json").read_text())
    code, out = _report(str(run_dir), "--rejudge")
    assert code == 0, out
    after = json.loads((run_dir / "summary.json").read_text())
    for key in ("seed", "users", "duration_s", "started", "pods", "checks", "events", "verdict"):
        assert after[key] == before[key], key


def _copy_with(run_dir: Path, name: str, **latency_p99: float) -> Path:
    copy = run_dir.parent / name
    shutil.copytree(run_dir, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["run_id"] = name
    for key, value in latency_p99.items():
        summary["latency_ms"][key]["p99"] = value
    (copy / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return copy


def test_compare_exits_0_without_and_1_with_a_regression(tmp_path: Path) -> None:
    base = scaling_run(tmp_path)
    same = _copy_with(base, "same")
    slow = _copy_with(base, "slow", handshake=200.0)
    code, out = _compare(str(base), str(same))
    assert code == 0 and out.strip().endswith("no regression")
    code, out = _compare(base.name, "slow", "--reports-dir", str(tmp_path))
    assert code == 1 and "REGRESSION  handshake p99 29.8 ms → 200.0 ms" in out
    code, out = _compare(str(slow), str(base))
    assert code == 0 and "better      handshake p99" in out
    code, _ = _compare(str(base), str(slow / "summary.json"), "--latency-threshold", "10")
    assert code == 0


def test_compare_prints_json_on_request(tmp_path: Path) -> None:
    base = scaling_run(tmp_path)
    slow = _copy_with(base, "slow", handshake=200.0)
    code, out = _compare(str(base), str(slow), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["regressed"] is True and [c["subject"] for c in data["worse"]] == ["handshake p99"]


def test_compare_of_other_topologies_or_missing_runs_is_a_usage_error(tmp_path: Path) -> None:
    base = scaling_run(tmp_path)
    other = lucky_run(tmp_path)
    code, out = _compare(str(base), str(other))
    assert code == 2 and "same topology" in out
    code, out = _compare(str(base), str(tmp_path / "missing"))
    assert code == 2 and "no run" in out
    code, out = _compare(str(base), str(base), "--latency-threshold", "-1")
    assert code == 2


# --- two reports directories: what the nightly job runs -------------------------------------------------------


def _error_line(out: str) -> str:
    """The one line of a usage error's message (click prints usage and a hint before it)."""
    (line,) = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert out.rstrip().endswith(line)
    return line


def test_compare_of_two_reports_directories_lists_each_pair_and_exits_0(
    nights: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline, reports = nights
    monkeypatch.chdir(baseline.parent)
    code, out = _compare("baseline", "reports")  # as in .github/workflows/nightly.yml
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"compare {reports} against baseline {baseline}: 6 pairs of runs"
    assert lines[1].split("  ")[0] == "pair" and lines[1].endswith("regressions  first regression")
    assert sorted(line.split("  ")[0] for line in lines[2:8]) == sorted(PAIRS.values())
    assert lines[8:] == ["no regression in 6 pairs"]


def test_compare_of_two_reports_directories_exits_1_and_names_the_regression(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    plant_regression(reports / next_id(KIND_IPVS))
    code, out = _compare(str(baseline), str(reports))
    assert code == 1, out
    (row,) = [line for line in out.splitlines() if line.startswith(PAIRS[KIND_IPVS])]
    assert f"{KIND_IPVS} {next_id(KIND_IPVS)} as expected differs from expected 1 continuity:" in " ".join(row.split())
    first = row.split("  ")[-1]  # the first regression, cut short: the detail below has it in full
    assert first.startswith("continuity: fail → pass, now differs from the expected fail") and first.endswith("…")
    assert f"regressions:\n  {PAIRS[KIND_IPVS]}:\n    compare {next_id(KIND_IPVS)} against baseline {KIND_IPVS}" in out
    assert out.rstrip().endswith("1 regression in 1 of 6 pairs")


def test_compare_lists_runs_without_a_partner_and_older_duplicates(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    shutil.rmtree(reports / next_id(SEED_SHARED))
    older = copy_run(reports / next_id(SEED), reports, "20240102-000000-seed-0000", later_s=-60)
    plant_regression(older)  # older than the one compared: not a regression
    code, out = _compare(str(baseline), str(reports))
    assert code == 0, out
    assert f"only in baseline: {SEED_SHARED} ({PAIRS[SEED_SHARED]})" in out.splitlines()
    assert f"ignored (run): {older.name}, older than {next_id(SEED)} with the same key ({PAIRS[SEED]})" in out
    assert out.rstrip().endswith("no regression in 5 pairs")


def test_compare_of_a_run_directory_with_a_reports_directory(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    code, out = _compare(str(baseline / SEED), str(reports))
    assert code == 0, out
    assert out.count("only in run: ") == len(RUNS) - 1 and "1 pair of runs" in out.splitlines()[0]


def test_compare_of_reports_directories_prints_json_on_request(nights: tuple[Path, Path]) -> None:
    baseline, reports = nights
    plant_regression(reports / next_id(SEED))
    code, out = _compare(str(baseline), str(reports), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["regressed"] is True and len(data["pairs"]) == len(RUNS)
    (pair,) = [p for p in data["pairs"] if p["regressions"]]
    assert (pair["baseline"], pair["run"], pair["run_verdict"]) == (SEED, next_id(SEED), "differs from expected")
    assert pair["key"]["topology"] == "seed" and pair["comparison"]["regressed"] is True


def test_compare_of_unusable_reports_directories_is_a_usage_error(nights: tuple[Path, Path], tmp_path: Path) -> None:
    baseline, reports = nights
    (tmp_path / "empty").mkdir()
    code, out = _compare(str(baseline), str(tmp_path / "empty"))
    assert code == 2 and "is neither a run directory (no summary.json) nor a reports directory" in _error_line(out)
    shutil.rmtree(reports / next_id(SEED))
    code, out = _compare(str(baseline / SEED), str(reports))
    assert code == 2 and _error_line(out).startswith(f"Error: nothing to compare: no run in {reports} (5) ran what")
    broken = reports / next_id(SCALING) / "summary.json"
    broken.write_text("{", encoding="utf-8")
    code, out = _compare(str(baseline), str(reports))
    assert code == 2 and _error_line(out).startswith(f"Error: {broken} is not valid JSON")
