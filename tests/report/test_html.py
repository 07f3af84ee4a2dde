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
from tests.report import (
    EVENT_FACTS,
    HARNESS_FAILURE,
    UNPLANNED,
    empty_run,
    failing_run,
    lucky_run,
    scaling_run,
    troubled_run,
)

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
        "troubled": troubled_run(root),
    }
    for run_dir in runs.values():
        write_report(run_dir)
    return runs


def _page(run_dir: Path) -> str:
    return (run_dir / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["scaling", "lucky", "failing", "empty", "troubled"])
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
    assert charts == 6  # live sessions per pod, sessions started per pod, broken sessions, three latency names
    assert page.count('<g class="cm"><title>e1: 30s scale app 5</title>') == charts
    assert page.count('<g class="cm"><title>e2: 60s kill app</title>') == charts
    moves = page[page.index('<section id="moves">') : page.index('<section id="latency">')]
    assert "e1 at 30.0 s: 30s scale app 5" in moves and "e2 at 60.0 s: 60s kill app" in moves
    assert "app-1 (removed)" in moves and "app-5 (new)" in moves


LIVE_TITLE = "Live sessions per pod (mean concurrent sessions per 2 s bucket)"


def test_live_sessions_per_pod_are_drawn_just_before_the_sessions_started(reports: dict[str, Path]) -> None:
    page = _page(reports["scaling"])
    section = page[page.index('<section id="sessions-per-pod">') : page.index('<section id="violations">')]
    live, started = section.index(f'aria-label="{LIVE_TITLE}"'), section.index('aria-label="Sessions started per pod')
    assert live < started
    live_chart = section[live : section.index("</svg>", live)]
    assert live_chart.count("<polygon") == 6  # one area per pod that had a live session
    assert "<title>app-1 (removed)</title>" in live_chart  # named as in the sessions-started chart
    # the same colour per pod in both charts
    for pod in ("app-0", "app-5", "app-1 (removed)"):
        fill = re.search(
            rf'fill="(#[0-9a-f]+)" fill-opacity="0.8" stroke="[^"]+" stroke-width="1"><title>{re.escape(pod)}<',
            live_chart,
        )
        assert fill and f'fill="{fill.group(1)}"><title>{pod}: ' in section[started:]
    assert "no session was live on a pod" in _page(reports["empty"])


def test_a_harness_failure_is_not_judged_and_said_first(reports: dict[str, Path]) -> None:
    page = _page(reports["troubled"])
    body = page[page.index("<body>") :]
    assert '<header class="verdict unjudged"' in body and ">NOT JUDGED<" in body
    assert ">AS EXPECTED<" not in body and ">NOT AS EXPECTED<" not in body
    assert "<title>NOT JUDGED: nginx-hash" in page
    box = body[body.index('<section id="trouble" class="alarm">') : body.index("</section>")]
    assert body.index("</header>") < body.index('<section id="trouble"') < body.index('<section id="checks">')
    assert f'<p class="failure">{HARNESS_FAILURE}</p>' in box


def test_exits_nobody_asked_for_are_listed_at_the_top_and_marked(reports: dict[str, Path]) -> None:
    page = _page(reports["troubled"])
    box = page[page.index('<section id="trouble"') : page.index('<section id="checks">')]
    assert "Exits nobody asked for" in box
    rows = re.findall(r"<tr><td>(x\d)</td>(.*?)</tr>", box, re.S)
    assert [r[0] for r in rows] == ["x1", "x2"]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r[1], re.S) for r in rows]
    assert cells[0] == ["app-2", "45.0 s", "137", "system under test", "4", UNPLANNED[0]["reading"]]
    assert cells[1] == ["netd", "unknown", "unknown", "harness", "0", UNPLANNED[1]["reading"]]
    # the exit is an event like the others on every chart, and listed among the events without a move matrix
    charts = page.count('<svg class="chart"')
    assert page.count('<g class="cm"><title>x1: app-2 exited (status 137)</title>') == charts
    moves = page[page.index('<section id="moves">') : page.index('<section id="latency">')]
    exit_part = moves[moves.index("<h3>x1 at 45.0 s") : moves.index("<h3>e2 ")]
    assert UNPLANNED[0]["reading"] in exit_part and "no move matrix" in exit_part
    assert "<table" not in exit_part
    assert moves.count('<table class="moves">') == 2


def test_unplanned_exits_without_a_harness_failure_keep_the_verdict(reports: dict[str, Path]) -> None:
    data = load_run(reports["troubled"])
    data.summary["harness_failure"] = None
    page = render_html(data)
    word = "AS EXPECTED" if data.summary["exit_code"] == 0 else "NOT AS EXPECTED"
    assert f">{word}<" in page and "NOT JUDGED" not in page
    assert "Exits nobody asked for" in page and "Harness failure" not in page


def test_the_event_section_shows_what_broke_and_how_load_settled(reports: dict[str, Path]) -> None:
    page = _page(reports["troubled"])
    moves = page[page.index('<section id="moves">') : page.index('<section id="latency">')]
    e1 = moves[moves.index("<h3>e1 ") : moves.index("<h3>x1 ")]
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", e1))
    assert facts == {
        "sessions live during the event": "38",
        "live sessions it broke": "wrong pod 3, reset 2, other 1",
        "break to the client&#39;s next connected session": "p50 0.25 s, p99 1.5 s",
        "new pods at half their fair share of live sessions": "4.5 s after the event",
        "observed as done": EVENT_FACTS["e1"]["observed"],
    }
    e2 = moves[moves.index("<h3>e2 ") :]
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", e2))
    assert facts == {
        "sessions live during the event": "40",
        "live sessions it broke": "none",
        "break to the client&#39;s next connected session": "none measured",
        "new pods at half their fair share of live sessions": "not reached",
        "why": EVENT_FACTS["e2"]["why"],
    }


def test_the_facts_the_judge_computes_are_shown(reports: dict[str, Path]) -> None:
    summary = json.loads((reports["scaling"] / "summary.json").read_text())
    page = _page(reports["scaling"])
    moves = page[page.index('<section id="moves">') : page.index('<section id="latency">')]
    for report in summary["events"]:
        assert f"<dt>sessions live during the event</dt><dd>{report['live_at_event']}</dd>" in moves


NEW_EVENT_KEYS = ("live_at_event", "broken", "reconnect_s", "new_pods_half_share_s", "observed", "why", "unreached")


@pytest.mark.parametrize("absent", [True, False])
def test_an_older_summary_without_the_new_keys_still_renders(reports: dict[str, Path], absent: bool) -> None:
    data = load_run(reports["scaling"])
    if absent:  # as an older harness wrote it
        for key in ("harness_failure", "unplanned"):
            data.summary.pop(key, None)
        for report in data.summary["events"]:
            for key in NEW_EVENT_KEYS:
                report.pop(key, None)
    else:  # present but empty
        data.summary["harness_failure"] = None
        data.summary["unplanned"] = []
        for report in data.summary["events"]:
            report.update(dict.fromkeys(NEW_EVENT_KEYS))
            report.pop("new_pods_half_share_s")
    page = render_html(data)
    assert '<section id="trouble"' not in page and "NOT JUDGED" not in page
    assert '<dl class="facts">' not in page
    assert LIVE_TITLE in page
    parser = _Balance()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []


def test_the_new_text_is_escaped(reports: dict[str, Path]) -> None:
    data = load_run(reports["troubled"])
    data.summary["harness_failure"] = "<script>alert(1)</script>"
    data.summary["unplanned"][0]["reading"] = "<img src=x>"
    data.summary["events"][0]["why"] = "<b>why</b>"
    page = render_html(data)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x>" not in page and "<b>why</b>" not in page


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


def test_the_run_details_name_the_session_length_and_the_case_when_there_are_any(reports: dict[str, Path]) -> None:
    data = load_run(reports["scaling"])
    data.summary.update(session_length_s=6.0, kube_proxy_mode="ipvs", case="tests/e2e/x.py::test_y")
    page = render_html(data)
    for label, value in (("session length", "6 s"), ("kube-proxy mode", "ipvs"), ("case", "tests/e2e/x.py::test_y")):
        assert re.search(rf"<dt>{label}</dt>\s*<dd>{re.escape(value)}</dd>", page), label
    data.summary.update(session_length_s=0.0, kube_proxy_mode=None, case=None)  # short sessions, local: not said
    page = render_html(data)
    assert "<dt>session length</dt>" not in page and "<dt>kube-proxy mode</dt>" not in page
