"""report.html: self-contained, the verdict first, one section per view, event markers where there were events,
and still a page when a run recorded nothing."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.report import load_run, render_html, write_html, write_report
from tests.report import empty_run, failing_run, lucky_run, scaling_run

VIEWS = ("checks", "sessions-per-pod", "violations", "moves", "latency", "balance")
_VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source", "area", "base", "embed", "track"}


class _Balance(HTMLParser):
    """Every element that is opened is closed, in order (the template and the SVG are hand-written)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reports")
    runs = {
        "scaling": scaling_run(root),
        "lucky": lucky_run(root),
        "failing": failing_run(root),
        "empty": empty_run(root),
    }
    for run_dir in runs.values():
        write_report(run_dir)
    return runs


def _page(run_dir: Path) -> str:
    return (run_dir / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["scaling", "lucky", "failing", "empty"])
def test_the_page_is_self_contained_and_well_formed(reports: dict[str, Path], kind: str) -> None:
    page = _page(reports[kind])
    assert page.startswith("<!DOCTYPE html>")
    for fetch in ("http://", "https://", "<script", " src=", "<link", "@import", "url("):
        assert fetch not in page, f"{fetch!r} in the {kind} report"
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs and all("/" not in h and ":" not in h for h in hrefs)  # only the run's own files
    parser = _Balance()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []


@pytest.mark.parametrize("kind", ["scaling", "lucky", "failing", "empty"])
def test_the_verdict_comes_first_then_one_section_per_view(reports: dict[str, Path], kind: str) -> None:
    page = _page(reports[kind])
    summary = json.loads((reports[kind] / "summary.json").read_text())
    body = page[page.index("<body>") :]
    word = "AS EXPECTED" if summary["exit_code"] == 0 else "NOT AS EXPECTED"
    assert body.index('<header class="verdict') < body.index(f">{word}<") < body.index("<section")
    assert ("NOT AS EXPECTED" in body) == (summary["exit_code"] != 0)
    positions = [body.index(f'<section id="{view}">') for view in VIEWS]
    assert positions == sorted(positions)
    for name, check in summary["checks"].items():
        assert f"{name} {check['measured']}" in body


def test_the_failing_negative_control_is_green_and_a_lucky_pass_says_it_is_luck(
    reports: dict[str, Path], tmp_path: Path
) -> None:
    assert '<header class="verdict ok"' in _page(reports["failing"])
    lucky = _page(reports["lucky"])  # the seed recipe expects its luck: green, and says why
    assert '<header class="verdict ok"' in lucky
    assert "a pass that rests on all chains converging on one pod" in lucky
    assert "expected_with: converged" in lucky
    # the same luck on a topology that does not expect it is red
    unexpected_run = lucky_run(tmp_path, "20240101-000100-no-affinity-eeee", topology="no-affinity")
    unexpected = _page(unexpected_run)
    assert '<header class="verdict bad"' in unexpected
    assert "a pass that rests on all chains converging on one pod" in unexpected
    # summary.json says so too, for tools that read it
    summaries = {
        name: json.loads((run / "summary.json").read_text())
        for name, run in (("lucky", reports["lucky"]), ("unexpected", unexpected_run), ("failing", reports["failing"]))
    }
    assert summaries["lucky"]["converged_on"] == "app-0" and summaries["lucky"]["expected_with_converged"]
    assert summaries["unexpected"]["converged_on"] == "app-0"
    assert not summaries["unexpected"]["expected_with_converged"]
    assert summaries["failing"]["converged_on"] is None and not summaries["failing"]["expected_with_converged"]


def test_events_are_marked_on_every_chart_over_time(reports: dict[str, Path]) -> None:
    page = _page(reports["scaling"])
    charts = page.count('<svg class="chart"')
    assert charts == 5  # sessions per pod, broken sessions, three latency names
    assert page.count('<g class="cm"><title>e1: 30s scale app 5</title>') == charts
    assert page.count('<g class="cm"><title>e2: 60s kill app</title>') == charts
    moves = page[page.index('<section id="moves">') : page.index('<section id="latency">')]
    assert "e1 at 30.0 s: 30s scale app 5" in moves and "e2 at 60.0 s: 60s kill app" in moves
    assert "app-1 (removed)" in moves and "app-5 (new)" in moves


def test_the_balance_table_lists_every_pod(reports: dict[str, Path]) -> None:
    page = _page(reports["scaling"])
    balance = page[page.index('<section id="balance">') : page.index('<section id="files">')]
    for pod in ("app-0", "app-1", "app-2", "app-3", "app-4", "app-5"):
        assert f"<td>{pod}</td>" in balance
    assert "removed" in balance


def test_a_run_without_events_or_sessions_says_so(reports: dict[str, Path]) -> None:
    quiet = _page(reports["lucky"])
    assert "no scaling event in this run" in quiet and '<g class="cm">' not in quiet
    empty = _page(reports["empty"])
    assert "no session reached a pod" in empty
    assert "no latency series recorded" in empty
    assert "no sessions were recorded" in empty


def test_text_from_the_records_is_escaped(reports: dict[str, Path]) -> None:
    data = load_run(reports["failing"])
    data.summary["checks"]["continuity"]["reason"] = "<script>alert(1)</script>"
    data.summary["description"] = '<img src="x">'
    page = render_html(data)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<img src="x">' not in page


def test_unreadable_records_are_skipped_and_reported(tmp_path: Path) -> None:
    run_dir = failing_run(tmp_path)
    with open(run_dir / "sessions-0-1.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"client": "c1", "trunc')
    write_html(run_dir)
    page = _page(run_dir)
    assert "sessions-0-1.jsonl line 601 skipped" in page


def test_a_run_without_a_summary_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="harness report"):
        load_run(tmp_path)
