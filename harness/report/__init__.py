"""Reports: what a finished run leaves for people (report.html) and for CI (junit.xml, exit codes, comparisons).

Everything here is rebuilt from a run directory's records and ``summary.json``, never from a live cluster, so a
report can be redrawn and two runs compared long after they ran: `write_report` at the end of a run,
``harness report RUN`` and ``harness compare BASELINE RUN`` later (`harness.report.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.report.compare import Change, RunComparison, Tolerances, compare_runs, load_summary
from harness.report.html import REPORT_FILE, RunData, load_run, render_html, write_html
from harness.report.junit import JUNIT_FILE, junit_xml, write_junit
from harness.report.series import LatencySeries, read_latency_series

__all__ = [
    "JUNIT_FILE",
    "REPORT_FILE",
    "Change",
    "LatencySeries",
    "ReportFiles",
    "RunComparison",
    "RunData",
    "Tolerances",
    "compare_runs",
    "junit_xml",
    "load_run",
    "load_summary",
    "read_latency_series",
    "render_html",
    "write_html",
    "write_junit",
    "write_report",
]


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    junit: Path


def write_report(run_dir: Path) -> ReportFiles:
    """Write ``report.html`` and ``junit.xml`` into a judged run directory (one with ``summary.json``)."""
    data = load_run(run_dir)
    junit = write_junit(run_dir, data.summary)  # first, so that the page lists it among the run's files
    return ReportFiles(html=write_html(run_dir, data), junit=junit)
