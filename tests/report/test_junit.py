"""junit.xml: it parses, has one test case per check and per event, and fails exactly where the measured
verdict differs from the expected one (a negative control failing as expected is a passing test)."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.report.junit import junit_xml, write_junit
from tests.report import empty_run, failing_run, lucky_run, scaling_run


def _suite(run_dir: Path) -> tuple[ET.Element, dict[str, Any]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    path = write_junit(run_dir)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0], summary


def _failed(suite: ET.Element) -> set[str]:
    return {str(case.get("name")) for case in suite.iter("testcase") if case.find("failure") is not None}


@pytest.mark.parametrize("build", [scaling_run, lucky_run, failing_run, empty_run])
def test_failures_exactly_where_measured_differs_from_expected(tmp_path: Path, build: Any) -> None:
    suite, summary = _suite(build(tmp_path))
    differs = {name for name, c in summary["checks"].items() if c["measured"] != c["expected"]}
    check_cases = [c for c in suite.iter("testcase") if not str(c.get("classname")).endswith(".events")]
    assert {c.get("name") for c in check_cases} == set(summary["checks"])
    assert _failed(suite) == differs
    assert suite.get("failures") == str(len(differs))
    assert suite.get("tests") == str(len(summary["checks"]) + len(summary["events"]))
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["topology"] == summary["topology"] and props["run_id"] == summary["run_id"]


def test_an_unexpected_lucky_pass_fails_and_carries_the_reason(tmp_path: Path) -> None:
    suite, _ = _suite(lucky_run(tmp_path, "20240101-000100-no-affinity-eeee", topology="no-affinity"))
    assert _failed(suite) == {"continuity", "affinity", "balance"}  # everything on one pod: nothing as expected
    failure = next(c for c in suite.iter("testcase") if c.get("name") == "continuity").find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("continuity: measured pass, expected fail")
    assert "a pass that rests on all chains converging" in (failure.text or "")
    assert '"violation_rate": 0.0' in (failure.text or "")


def test_the_seed_recipes_expected_luck_fails_nothing(tmp_path: Path) -> None:
    suite, _ = _suite(lucky_run(tmp_path))
    assert _failed(suite) == set()


def test_the_negative_control_failing_as_expected_passes(tmp_path: Path) -> None:
    suite, _ = _suite(failing_run(tmp_path))
    assert _failed(suite) == set()


def test_events_are_test_cases_that_fail_when_the_event_failed(tmp_path: Path) -> None:
    suite, summary = _suite(scaling_run(tmp_path))
    events = [c for c in suite.iter("testcase") if str(c.get("classname")).endswith(".events")]
    assert [c.get("name") for c in events] == ["e1 30s scale app 5", "e2 60s kill app"]
    assert all(c.find("failure") is None for c in events)
    assert "remapped 16 of 40 clients" in (events[0].findtext("system-out") or "")
    broken = copy.deepcopy(summary)
    broken["events"][1]["error"] = "kubectl delete pod app-1: timed out"
    root = ET.fromstring(junit_xml(broken))
    failed = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["continuity", "e2 60s kill app"]  # moves onto new pods: not breaks


def test_an_unjudged_check_with_no_expectation_is_skipped() -> None:
    summary = {
        "topology": "t",
        "run_id": "r",
        "checks": {
            "balance": {"measured": "n/a", "expected": "n/a", "matches": True, "reason": "too few sessions"},
            "continuity": {"measured": "pass", "expected": "n/a", "matches": True, "reason": "ok"},
        },
        "events": [],
    }
    root = ET.fromstring(junit_xml(summary))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["balance"].find("skipped") is not None
    assert cases["continuity"].find("skipped") is None and cases["continuity"].find("failure") is None
    assert root.get("skipped") == "1" and root.get("failures") == "0"
