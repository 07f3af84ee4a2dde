"""JUnit XML for a run, so that CI systems show a sticky-session run like any other test suite.

CI reads a run as an exit code and, where it can, as JUnit: one test suite per run, one test case per check,
failed exactly when the measured verdict differs from the topology's expected one (a negative control that fails
as expected is a passing test), with the reason and the figures behind it; a check that could not judge and of
which nothing was expected is skipped. Each scaling event is a test case too, failed when the event itself
failed, carrying its reading. Built with ``xml.etree`` from ``summary.json`` alone.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["JUNIT_FILE", "check_matches", "junit_xml", "write_junit"]

JUNIT_FILE = "junit.xml"
_PROPERTIES = ("run_id", "topology", "backend", "seed", "users", "duration_s", "client_addresses", "verdict")


def check_matches(check: Mapping[str, Any]) -> bool:
    """Whether a check of ``summary.json`` met its expectation (an expectation of n/a, or none, asserts nothing)."""
    if "matches" in check:
        return bool(check["matches"])
    expected = check.get("expected")
    return expected in (None, "n/a") or check.get("measured", check.get("verdict")) == expected


def _figures_text(check: Mapping[str, Any]) -> str:
    lines = [str(check.get("reason", ""))]
    for example in check.get("examples", []):
        lines.append(f"example: {example}")
    for note in check.get("notes", []):
        lines.append(f"note: {note}")
    figures = check.get("figures")
    if figures:
        lines.append("figures: " + json.dumps(figures, indent=2, sort_keys=True))
    return "\n".join(lines)


def _check_case(suite: ET.Element, classname: str, name: str, check: Mapping[str, Any]) -> tuple[int, int]:
    """Add one check's test case; returns (failures, skipped) it adds."""
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    measured = str(check.get("measured", check.get("verdict", "n/a")))
    expected = str(check.get("expected", "n/a"))
    text = _figures_text(check)
    if not check_matches(check):
        failure = ET.SubElement(
            case,
            "failure",
            message=f"{name}: measured {measured}, expected {expected}: {check.get('reason', '')}",
            type="VerdictMismatch",
        )
        failure.text = text
        return 1, 0
    if measured == "n/a":
        ET.SubElement(case, "skipped", message=f"{name} could not be judged: {check.get('reason', '')}")
        return 0, 1
    ET.SubElement(case, "system-out").text = f"measured {measured}, expected {expected}\n{text}"
    return 0, 0


def _event_case(suite: ET.Element, classname: str, event: Mapping[str, Any]) -> int:
    name = f"{event.get('id', '?')} {event.get('label', '')}".strip()
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=str(event.get("duration_s", 0)))
    figures = {k: v for k, v in event.items() if k not in ("id", "label", "reading")}
    text = f"{event.get('reading', '')}\nfigures: {json.dumps(figures, indent=2, sort_keys=True)}"
    if event.get("error"):
        failure = ET.SubElement(case, "failure", message=f"event {name} failed: {event['error']}", type="EventFailed")
        failure.text = text
        return 1
    ET.SubElement(case, "system-out").text = text
    return 0


def junit_xml(summary: Mapping[str, Any]) -> str:
    """The JUnit XML document (as text) for a run's summary."""
    topology = str(summary.get("topology", "unknown"))
    classname = f"sticky_harness.{topology}"
    root = ET.Element("testsuites", name="sticky-harness")
    suite = ET.SubElement(root, "testsuite", name=f"sticky-harness {topology} {summary.get('run_id', '')}".strip())
    props = ET.SubElement(suite, "properties")
    for key in _PROPERTIES:
        if summary.get(key) is not None:
            ET.SubElement(props, "property", name=key, value=str(summary[key]))
    tests = failures = skipped = 0
    for name, check in summary.get("checks", {}).items():
        failed, skip = _check_case(suite, classname, str(name), check)
        tests, failures, skipped = tests + 1, failures + failed, skipped + skip
    for event in summary.get("events", []):
        failures += _event_case(suite, f"{classname}.events", event)
        tests += 1
    notes = summary.get("notes") or []
    if notes:
        ET.SubElement(suite, "system-out").text = "\n".join(f"note: {n}" for n in notes)
    duration = summary.get("duration_s")
    if duration is None and summary.get("started") and summary.get("ended"):
        duration = float(summary["ended"]) - float(summary["started"])
    counts = {"tests": str(tests), "failures": str(failures), "errors": "0", "skipped": str(skipped)}
    counts["time"] = f"{float(duration or 0):.3f}"
    for element in (root, suite):
        element.attrib.update(counts)
    if summary.get("started"):
        suite.set("timestamp", datetime.fromtimestamp(float(summary["started"]), UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(run_dir: Path, summary: Mapping[str, Any] | None = None) -> Path:
    """Write ``junit.xml`` into the run directory (from its ``summary.json`` unless one is given)."""
    if summary is None:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    path = run_dir / JUNIT_FILE
    path.write_text(junit_xml(summary), encoding="utf-8")
    return path
