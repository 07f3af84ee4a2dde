"""report.html: a run as people read it — the verdict first, then the pictures that explain it.

The file is opened from CI artefacts and issue attachments, often offline, so it is one self-contained page: no
script, no stylesheet or font to fetch, charts drawn as inline SVG (`harness.report.charts`). Everything in it is
rebuilt from the run directory — ``summary.json`` for the verdicts, the session and event records and the latency
series for the views over time — so ``harness report RUN`` can redraw an old run. Text from records is escaped by
Jinja's autoescaping; only the generated SVG is inserted as markup.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.checks.scaling import assign_disruption
from harness.client.records import SessionRecord, apply_aliases, load_aliases
from harness.errors import UsageError
from harness.events import EventRecord, read_event_records
from harness.report.charts import CHART_CSS, Line, Marker, color_for, line_chart, stacked_area, stacked_bars
from harness.report.junit import check_matches
from harness.report.series import EventMoves, LatencySeries, Timeline, event_moves, read_latency_series, timeline

__all__ = ["REPORT_FILE", "RunData", "load_run", "render_html", "write_html"]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
_FILE_PATTERNS = (
    "summary.json",
    "junit.xml",
    "sessions-*.jsonl",
    "events.jsonl",
    "latency-*.json",
    "series-latency-*.json",
    "locust*.csv",
    "locust.log",
    "network.json",
)
_VIOLATION_COLORS = {"violations": "#e15759", "disrupted by events": "#f28e2b", "never reached a pod": "#9c9c9c"}
_PERCENTILES = ((50.0, "p50", "#4e79a7"), (90.0, "p90", "#f28e2b"), (99.0, "p99", "#e15759"))
_BROKEN_KINDS = {"wrong_pod": "wrong pod", "reset": "reset", "timeout": "timeout", "other": "other"}


@dataclass
class RunData:
    """Everything the report is drawn from, read from a run directory: the records stream by into per-bucket
    counts and each event's moves, and are not kept."""

    run_dir: Path
    summary: dict[str, Any]
    timeline: Timeline
    moves: list[EventMoves]  # one per entry of ``events``
    events: list[EventRecord]
    latency: LatencySeries | None
    problems: list[str] = field(default_factory=list)  # records that could not be read


class _RunSessions:
    """A run's session records, read again from its files at each pass, pods named and each marked with the event
    that disrupted it (judge() marks them in memory only; the records do not carry it). A line that cannot be read
    (a run killed mid-write) is skipped and reported once."""

    def __init__(self, run_dir: Path, events: list[EventRecord]) -> None:
        self.run_dir, self.events = run_dir, events
        self.aliases = load_aliases(run_dir)
        self.skipped: dict[tuple[str, int], str] = {}

    def __iter__(self) -> Iterator[SessionRecord]:
        for path in sorted(self.run_dir.glob("sessions-*.jsonl")):
            with open(path, encoding="utf-8") as fh:
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = apply_aliases(SessionRecord.from_json(json.loads(line)), self.aliases)
                    except (ValueError, TypeError, KeyError) as exc:
                        self.skipped[(path.name, number)] = f"{path.name} line {number} skipped: {exc}"
                        continue
                    assign_disruption(record, self.events)
                    yield record


def load_run(run_dir: Path) -> RunData:
    """Read a judged run directory (one with ``summary.json``)."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UsageError(f"no summary.json in {run_dir}: judge the run first with `harness report {run_dir}`")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); delete it and run `harness report {run_dir}`") from exc
    events = read_event_records(run_dir)
    sessions = _RunSessions(run_dir, events)
    tl = timeline(sessions, events, pods=summary.get("pods", []))
    moves = event_moves((s.slimmed() for s in sessions), events)  # reads the records only for planned events
    problems = list(sessions.skipped.values())
    try:
        latency = read_latency_series(run_dir)
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"latency series not shown: {exc}")
        latency = None
    return RunData(run_dir, summary, tl, moves, events, latency, problems)


def _utc(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _checks_view(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, check in summary.get("checks", {}).items():
        measured = check.get("measured", check.get("verdict", "n/a"))
        expected = check.get("expected", "n/a")
        asserted = expected not in (None, "n/a")
        matches = check_matches(check)
        rows.append(
            {
                "name": name,
                "measured": measured,
                "expected": expected,
                "asserted": asserted,
                "matches": matches,
                "css": "bad" if not matches else "ok" if asserted else "na",
                "reason": check.get("reason", ""),
                "examples": check.get("examples", []),
                "notes": check.get("notes", []),
            }
        )
    return rows


def _load_meta(load: dict[str, Any]) -> str | None:
    if not load.get("processes"):
        return None
    if not load.get("workers"):
        return f"{load['processes']} (one Locust process)"
    each = ", ".join(f"{name} {n}" for name, n in load.get("sessions_per_process", {}).items())
    return f"a master and workers {load['workers']} (sessions: {each})"


def _meta_view(data: RunData) -> list[tuple[str, str]]:
    s = data.summary
    items = [
        ("run", s.get("run_id", data.run_dir.name)),
        ("topology", s.get("topology")),
        ("backend", s.get("backend")),
        ("seed", s.get("seed")),
        ("users", s.get("users")),
        ("duration", f"{s['duration_s']:g} s" if isinstance(s.get("duration_s"), int | float) else None),
        ("client addresses", s.get("client_addresses")),
        ("session length", f"{s['session_length_s']:g} s" if s.get("session_length_s") else None),
        ("kube-proxy mode", s.get("kube_proxy_mode")),
        ("case", s.get("case")),
        ("sessions", s.get("sessions")),
        ("clients", s.get("clients")),
        ("load processes", _load_meta(s.get("load") or {})),
        ("started", _utc(s.get("started"))),
        ("pods at the end", ", ".join(s.get("pods", [])) or None),
        ("pods removed", ", ".join(s.get("removed_pods", [])) or None),
    ]
    return [(k, str(v)) for k, v in items if v not in (None, "")]


def _continuity_text(figures: dict[str, Any]) -> str:
    if not figures:
        return ""
    reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.get("by_reason", {}).items() if v)
    by_event = ", ".join(f"{k}: {v}" for k, v in figures.get("disrupted_by_event", {}).items())
    return (
        f"{figures.get('violations', 0)} violations of {figures.get('judged', 0)} judged sessions"
        + (f" ({reasons})" if reasons else "")
        + f"; {figures.get('disrupted', 0)} disrupted by events"
        + (f" ({by_event})" if by_event else "")
        + f"; {figures.get('errors', 0)} never reached a pod."
    )


def _event_details(event: EventRecord, report: dict[str, Any]) -> str:
    """What the reading leaves out: which pods went and came, how long the event took, the slowest recovery."""
    if not event.planned:
        parts = [f"{event.target} exited without being asked to"]
        if event.removed:
            parts.append(f"removed: {', '.join(event.removed)}")
        return "; ".join(parts)
    parts = [f"removed: {', '.join(event.removed) or 'none'}", f"added: {', '.join(event.added) or 'none'}"]
    parts.append(f"the event took {event.ended - event.started:.1f} s")
    recovery = (report.get("recovery_s") or {}).get("p99")
    if recovery is not None:
        parts.append(f"slowest recovery (p99) {recovery:g} s")
    return "; ".join(parts)


def _event_reading(report: dict[str, Any], unplanned: dict[str, Any]) -> str:
    """The scaling report's reading of an event; for an unplanned exit, the reading of the exit first."""
    return str(unplanned.get("reading") or report.get("reading") or "")


def _seconds(value: Any) -> str:
    return f"{round(value, 3):g} s" if isinstance(value, int | float) else "n/a"


def _event_facts(event: EventRecord, report: dict[str, Any]) -> list[tuple[str, str]]:
    """The scaling report's figures about the sessions an event broke and how load settled, for the ones the
    summary carries (older runs carry none of them)."""
    facts: list[tuple[str, str]] = []
    live = report.get("live_at_event")
    if live is not None:
        facts.append(("sessions live during the event", str(live)))
    broken = report.get("broken")
    if isinstance(broken, dict):
        order = [*(k for k in _BROKEN_KINDS if k in broken), *(k for k in broken if k not in _BROKEN_KINDS)]
        text = ", ".join(f"{_BROKEN_KINDS.get(k, k)} {broken[k]}" for k in order if broken[k])
        facts.append(("live sessions it broke", text or "none"))
    reconnect = report.get("reconnect_s")
    if isinstance(reconnect, dict):
        if reconnect.get("p50") is None and reconnect.get("p99") is None:
            text = "none measured"
        else:
            text = f"p50 {_seconds(reconnect.get('p50'))}, p99 {_seconds(reconnect.get('p99'))}"
        facts.append(("break to the client's next connected session", text))
    if "new_pods_half_share_s" in report and (event.added or report["new_pods_half_share_s"] is not None):
        half = report["new_pods_half_share_s"]
        text = "not reached" if half is None else f"{_seconds(half)} after the event"
        facts.append(("new pods at half their fair share of live sessions", text))
    if report.get("unreached"):
        facts.append(("new pods alive but reached by no probe", ", ".join(map(str, report["unreached"]))))
    if report.get("observed"):
        facts.append(("observed as done", str(report["observed"])))
    if report.get("why"):
        facts.append(("why", str(report["why"])))
    return facts


def _unplanned_view(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The exits nobody asked for (``summary["unplanned"]``), as table rows."""
    rows = []
    for exit_ in summary.get("unplanned") or []:
        if not isinstance(exit_, dict):
            continue
        status = exit_.get("exit_status")
        rows.append(
            {
                "id": str(exit_.get("id", "")),
                "what": str(exit_.get("what", "")),
                "at": f"{exit_['at_s']:.1f} s" if isinstance(exit_.get("at_s"), int | float) else "unknown",
                "status": "unknown" if status is None else str(status),
                "blame": str(exit_.get("blame", "")),
                "disrupted": str(exit_.get("disrupted_sessions", "")),
                "reading": str(exit_.get("reading") or ""),
            }
        )
    return rows


def _markers(tl: Timeline) -> list[Marker]:
    return [Marker(x, eid, f"{eid}: {label}") for x, eid, label in tl.markers]


def _pod_names(tl: Timeline, removed: set[str]) -> dict[str, str]:
    return {pod: f"{pod} (removed)" if pod in removed else pod for pod in tl.started_per_pod}


def _sessions_chart(tl: Timeline, removed: set[str]) -> str:
    names = _pod_names(tl, removed)
    layers = {names[pod]: [float(n) for n in counts] for pod, counts in tl.started_per_pod.items()}
    colors = {names[pod]: color_for(i) for i, pod in enumerate(tl.started_per_pod)}
    return stacked_bars(
        tl.starts,
        tl.bucket_s,
        layers,
        colors=colors,
        title=f"Sessions started per pod ({tl.bucket_s:g} s buckets, by the pod that answered the handshake)",
        y_label="sessions",
        markers=_markers(tl),
        unit=" sessions",
        empty_text="no session reached a pod",
    )


def _live_chart(tl: Timeline, removed: set[str]) -> str:
    names = _pod_names(tl, removed)
    layers = {names[pod]: tl.live_per_pod.get(pod, [0.0] * len(tl.starts)) for pod in tl.started_per_pod}
    colors = {names[pod]: color_for(i) for i, pod in enumerate(tl.started_per_pod)}
    return stacked_area(
        tl.starts,
        tl.bucket_s,
        layers,
        colors=colors,
        title=f"Live sessions per pod (mean concurrent sessions per {tl.bucket_s:g} s bucket)",
        y_label="live sessions",
        markers=_markers(tl),
        unit=" live sessions",
        empty_text="no session was live on a pod",
    )


def _violations_chart(tl: Timeline) -> str:
    layers = {
        "violations": [float(n) for n in tl.violations],
        "disrupted by events": [float(n) for n in tl.disruptions],
        "never reached a pod": [float(n) for n in tl.errors],
    }
    return stacked_bars(
        tl.starts,
        tl.bucket_s,
        layers,
        colors=_VIOLATION_COLORS,
        title=f"Broken sessions per {tl.bucket_s:g} s, by when they ended",
        y_label="sessions",
        markers=_markers(tl),
        unit=" sessions",
        empty_text="no violation, no disruption, no error",
    )


def _latency_charts(series: LatencySeries | None, tl: Timeline) -> list[Markup]:
    if series is None:
        return []
    width = series.bucket_s
    if tl.bucket_s > width and tl.bucket_s % width == 0:
        series = series.rebucket(tl.bucket_s)
    charts = []
    for name in series.names():
        lines = [
            Line(label, [(x - tl.t0, y) for x, y in series.percentile_series(name, p)], color)
            for p, label, color in _PERCENTILES
        ]
        xs = [x for line in lines for x, _ in line.points]
        span = (min([0.0, *xs]), max([tl.end, *xs]))
        title = f"{name} latency per {series.bucket_s:g} s"
        charts.append(
            Markup(line_chart(lines, title=title, y_label="ms", x_range=span, markers=_markers(tl), unit=" ms"))
        )
    return charts


def _moves_view(data: RunData) -> list[dict[str, Any]]:
    reports = {r.get("id"): r for r in data.summary.get("events", [])}
    t0 = data.timeline.t0
    unplanned = {u.get("id"): u for u in data.summary.get("unplanned") or [] if isinstance(u, dict)}
    views = []
    for event, moves in zip(data.events, data.moves, strict=True):
        exited = not event.planned  # an unplanned exit: listed, but nobody moved clients on purpose
        rows, columns = ([], []) if exited else moves.pods()
        biggest = max([n for row in moves.moves.values() for n in row.values()], default=1)
        matrix = []
        for pod in rows:
            cells = []
            for col in columns:
                n = moves.moves[pod].get(col, 0)
                kind = (
                    "stay"
                    if pod == col
                    else "forced"
                    if pod in event.removed
                    else "onto-new"
                    if col in event.added
                    else "move"
                )
                cells.append({"n": n, "kind": kind, "alpha": round(0.12 + 0.6 * n / biggest, 2) if n else 0})
            matrix.append({"pod": pod, "removed": pod in event.removed, "cells": cells})
        report = reports.get(event.id, {})
        views.append(
            {
                "id": event.id,
                "label": event.label,
                "at": f"{event.started - t0:.1f}",
                "exited": exited,
                "removed": event.removed,
                "added": event.added,
                "error": event.error,
                "reading": _event_reading(report, unplanned.get(event.id, {}) if exited else {}),
                "details": _event_details(event, report),
                "facts": _event_facts(event, report),
                "columns": [{"pod": c, "added": c in event.added} for c in columns],
                "matrix": matrix,
                "compared": moves.compared,
                "stayed": moves.stayed,
            }
        )
    return views


def _balance_view(data: RunData, tl: Timeline) -> dict[str, Any]:
    check = data.summary.get("checks", {}).get("balance", {})
    figures = check.get("figures", {})
    per_pod: dict[str, int] = figures.get("per_pod", {})
    whole = {pod: sum(counts) for pod, counts in tl.started_per_pod.items()}
    total, total_whole = sum(per_pod.values()), sum(whole.values())
    mean = figures.get("mean") or (total / len(per_pod) if per_pod else 0)
    removed = set(data.summary.get("removed_pods", []))
    idle = set(figures.get("idle_pods", []))
    rows = []
    for pod in dict.fromkeys([*per_pod, *whole]):
        n = per_pod.get(pod)
        status = "removed" if pod in removed else "idle" if pod in idle else "not in the window" if n is None else ""
        rows.append(
            {
                "pod": pod,
                "window": "" if n is None else n,
                "share": f"{n / total * 100:.1f}%" if n is not None and total else "",
                "vs_mean": f"{n / mean:.2f}x" if n is not None and mean else "",
                "whole": whole.get(pod, 0),
                "whole_share": f"{whole.get(pod, 0) / total_whole * 100:.1f}%" if total_whole else "",
                "status": status,
                "bar": round(100 * n / max(per_pod.values())) if n and max(per_pod.values()) else 0,
            }
        )
    figures_text = ""
    if figures:
        figures_text = (
            f"{figures.get('window', 'all sessions')}: Jain {figures.get('jain', 1.0):.3f} "
            f"(at least {figures.get('min_jain')}), busiest pod {figures.get('max_mean_ratio', 1.0):.2f}x the mean "
            f"(at most {figures.get('max_ratio')})"
        )
    return {"check": check, "figures_text": figures_text, "rows": rows}


def _files_view(run_dir: Path) -> list[str]:
    found: list[str] = []
    for pattern in _FILE_PATTERNS:
        found += [p.name for p in sorted(run_dir.glob(pattern)) if p.name not in found]
    return found


def render_html(data: RunData) -> str:
    """The report page for a run, as text."""
    s = data.summary
    removed = set(s.get("removed_pods", []))
    tl = data.timeline
    ok = s.get("exit_code", 1) == 0
    failure = s.get("harness_failure") or None
    interrupted = s.get("interrupted") or None
    checks = _checks_view(s)
    continuity = s.get("checks", {}).get("continuity", {}).get("figures", {})
    if interrupted:
        word, line = "INTERRUPTED", f"stopped by {interrupted} before its end: what was measured so far, not judged"
    elif failure:
        word, line = "NOT JUDGED", "the harness failed, so the run was not judged"
    else:
        word, line = ("AS EXPECTED" if ok else "NOT AS EXPECTED"), s.get("verdict", "")
    context = {
        "s": s,
        "verdict_css": "unjudged" if failure or interrupted else "ok" if ok else "bad",
        "verdict_word": word,
        "verdict_line": line,
        "harness_failure": failure,
        "unplanned": _unplanned_view(s),
        "checks": checks,
        "meta": _meta_view(data),
        "notes": [
            *([f"SATURATED LOAD GENERATOR: {s['load']['reason']}"] if (s.get("load") or {}).get("saturated") else []),
            *s.get("notes", []),
            *data.problems,
        ],
        "load": s.get("load") or {},
        "events": [{"id": eid, "at": f"{x:.1f}", "label": label} for x, eid, label in tl.markers],
        "live_chart": Markup(_live_chart(tl, removed)),
        "sessions_chart": Markup(_sessions_chart(tl, removed)),
        "violations_chart": Markup(_violations_chart(tl)),
        "continuity_text": _continuity_text(continuity),
        "latency_table": s.get("latency_ms", {}),
        "latency_charts": _latency_charts(data.latency, tl),
        "moves": _moves_view(data),
        "balance": _balance_view(data, tl),
        "files": _files_view(data.run_dir),
        "css": Markup(_CSS + CHART_CSS),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    return _TEMPLATE.render(**context)


def write_html(run_dir: Path, data: RunData | None = None) -> Path:
    """Write ``report.html`` into the run directory; returns its path."""
    path = run_dir / REPORT_FILE
    path.write_text(render_html(data or load_run(run_dir)), encoding="utf-8")
    return path


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
  max-width: 1000px; padding: 0 16px 40px; }
header.verdict { padding: 14px 18px; border-radius: 0 0 8px 8px; color: #fff; }
header.ok { background: #1b7f3b; } header.bad { background: #b3261e; } header.unjudged { background: #4a4a4a; }
header .big { font-size: 30px; font-weight: 700; letter-spacing: .5px; }
header .sub { opacity: .92; }
header ul { list-style: none; padding: 0; margin: 8px 0 0; display: flex; flex-wrap: wrap; gap: 8px; }
header li { background: rgba(255,255,255,.18); padding: 2px 10px; border-radius: 12px; }
header li.bad { background: #fff; color: #b3261e; font-weight: 600; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 14px 0; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; }
h2 { margin-top: 30px; border-bottom: 1px solid #ddd; padding-bottom: 4px; font-size: 19px; }
h3 { font-size: 15px; margin: 18px 0 4px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; white-space: nowrap; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td.v { color: #b3261e; font-weight: 700; } tr.ok td.v { color: #1b7f3b; font-weight: 700; }
td.stay { background: rgba(27,127,59,var(--a)); } td.move { background: rgba(179,38,30,var(--a)); }
td.forced { background: rgba(242,142,43,var(--a)); } td.onto-new { background: rgba(38,110,179,var(--a)); }
.bar { background: #4e79a7; height: 10px; display: inline-block; }
.muted { color: #777; } .note { background: #fff6d6; padding: 4px 8px; border-left: 3px solid #e0b000; }
ul.ex { margin: 2px 0 6px; font-size: 13px; color: #444; }
code { font-size: 12.5px; }
div.scroll { overflow-x: auto; }
section.alarm { border: 2px solid #b3261e; background: #fdecea; border-radius: 8px; padding: 4px 16px 10px;
  margin: 14px 0; }
section.alarm h2 { color: #b3261e; border-bottom-color: #f3b4ae; margin-top: 10px; }
section.alarm p.failure { font-size: 16px; font-weight: 600; color: #7a1a14; }
section.alarm table { background: #fff; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 1px 12px; margin: 4px 0 8px;
  font-size: 13px; }
dl.facts dt { color: #666; } dl.facts dd { margin: 0; }
"""

_TEMPLATE = _ENV.from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ verdict_word }}: {{ s.get("topology", "") }} {{ s.get("run_id", "") }}</title>
<style>{{ css }}</style>
</head>
<body>
<header class="verdict {{ verdict_css }}" id="verdict">
<div class="big">{{ verdict_word }}</div>
<div class="sub">{{ s.get("topology", "?") }}: {{ verdict_line }} (exit code {{ s.get("exit_code", "?") }})</div>
<ul>
{% for c in checks %}
<li class="{{ c.css }}">{{ c.name }} {{ c.measured }}{% if c.asserted %}, expected {{ c.expected }}{% endif %}</li>
{% endfor %}
</ul>
</header>
{% if harness_failure or unplanned %}
<section id="trouble" class="alarm">
{% if harness_failure %}
<h2>Harness failure: this run was not judged</h2>
<p class="failure">{{ harness_failure }}</p>
<p>The harness's own machinery failed, so the checks below do not say whether the system under test works.</p>
{% endif %}
{% if unplanned %}
<h2>Exits nobody asked for</h2>
<div class="scroll"><table class="unplanned">
<tr><th>id</th><th>process</th><th>at</th><th>exit status</th><th>blame</th><th>sessions disrupted</th>
<th>reading</th></tr>
{% for u in unplanned %}<tr><td>{{ u.id }}</td><td>{{ u.what }}</td><td class="num">{{ u.at }}</td>
<td class="num">{{ u.status }}</td><td>{{ u.blame }}</td><td class="num">{{ u.disrupted }}</td>
<td>{{ u.reading }}</td></tr>
{% endfor %}</table></div>
{% endif %}
</section>
{% endif %}
<dl class="meta">
{% for k, v in meta %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}
</dl>
{% if s.get("description") %}<p class="muted">{{ s.description }}</p>{% endif %}
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}

<section id="checks">
<h2>Checks</h2>
<table>
<tr><th>check</th><th>measured</th><th>expected</th><th>match</th><th>why</th></tr>
{% for c in checks %}
<tr class="{{ c.css }}"><td>{{ c.name }}</td><td class="v">{{ c.measured }}</td><td>{{ c.expected }}</td>
<td>{{ ("yes" if c.matches else "NO") if c.asserted else "-" }}</td>
<td>{{ c.reason }}
{% if c.examples %}<ul class="ex">{% for e in c.examples %}<li>{{ e }}</li>{% endfor %}</ul>{% endif %}
{% for n in c.notes %}<div class="note">{{ n }}</div>{% endfor %}</td></tr>
{% else %}
<tr><td colspan="5" class="muted">no check was recorded</td></tr>
{% endfor %}
</table>
<p class="muted">Green or red says whether a check met the topology's expectation, not whether it passed: a negative
control that fails as expected is green.</p>
</section>

<section id="sessions-per-pod">
<h2>Sessions per pod over time</h2>
{{ live_chart }}
{{ sessions_chart }}
{% if events %}<p class="muted">Dashed lines mark events:
{% for e in events %}<b>{{ e.id }}</b> at {{ e.at }} s: {{ e.label }}{{ "; " if not loop.last }}{% endfor %}</p>
{% endif %}
</section>

<section id="violations">
<h2>Continuity violations and disruptions over time</h2>
{{ violations_chart }}
{% if continuity_text %}<p>{{ continuity_text }}</p>{% endif %}
</section>

<section id="moves">
<h2>Where clients moved at each event</h2>
{% for m in moves %}
<h3>{{ m.id }} at {{ m.at }} s: {{ m.label }}</h3>
{% if m.error %}<p class="note">the event failed: {{ m.error }}</p>{% endif %}
<p>{{ m.reading }}</p>
<p class="muted">{{ m.details }}</p>
{% if m.facts %}<dl class="facts">
{% for k, v in m.facts %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}
</dl>{% endif %}
{% if m.exited %}<p class="muted">an exit nobody asked for: no move matrix (clients were not moved on purpose).</p>
{% elif m.matrix %}
<div class="scroll"><table class="moves"><tr><th>pod before ↓ / after →</th>
{% for c in m.columns %}<th>{{ c.pod }}{{ " (new)" if c.added }}</th>{% endfor %}</tr>
{% for row in m.matrix %}<tr><th>{{ row.pod }}{{ " (removed)" if row.removed }}</th>
{% for cell in row.cells %}
<td class="num {{ cell.kind if cell.n }}" style="--a: {{ cell.alpha }}">{{ cell.n or "" }}</td>
{% endfor %}</tr>
{% endfor %}</table></div>
<p class="muted">{{ m.stayed }} of {{ m.compared }} clients compared (a good session before and after the event)
stayed on their pod (green); orange: moved off a removed pod; blue: handed to a new pod (how many, against the
minimum, is the reading above); red: moved between pods that were there before and after.</p>
{% else %}<p class="muted">no client had a good session both before and after this event.</p>{% endif %}
{% else %}
<p class="muted">no scaling event in this run</p>
{% endfor %}
</section>

<section id="latency">
<h2>Latency percentiles over time</h2>
{% if latency_table %}
<table><tr><th>name</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>
{% for name, v in latency_table.items() %}<tr><td>{{ name }}</td><td class="num">{{ v.count }}</td>
{% for k in ("p50", "p90", "p99", "max") %}<td class="num">{{ "-" if v[k] is none else v[k] }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endif %}
{% for chart in latency_charts %}{{ chart }}
{% else %}<p class="muted">no latency series recorded for this run</p>{% endfor %}
</section>

<section id="load">
<h2>Load generators</h2>
{% if load.per_process %}
<table><tr><th>process</th><th>role</th><th>sessions</th><th>peak live</th><th>CPU mean / peak %</th>
<th>peak loop lag ms</th><th>peak RSS MiB</th><th>busy</th><th>saturated</th></tr>
{% for p in load.per_process %}<tr class="{{ 'bad' if p.saturated }}"><td>{{ p.name }}</td><td>{{ p.role }}</td>
<td class="num">{{ p.sessions }}</td><td class="num">{{ p.peak_live }}</td>
<td class="num">{{ p.mean_cpu }} / {{ p.peak_cpu }}</td><td class="num">{{ p.peak_lag_ms }}</td>
<td class="num">{{ p.peak_rss_mib }}</td><td class="num">{{ (p.busy_share * 100) | round(1) }} %</td>
<td>{{ "yes" if p.saturated else "no" }}</td></tr>
{% endfor %}</table>
<p class="muted">Each load process samples itself every second. Busy: above 90 % of a core or its event loop late
by more than 100 ms; saturated: busy for more than 10 % of the run, when its latencies measure the harness rather
than the system and its timeouts in busy seconds are set apart as load-side errors
({{ load.load_side_timeouts or 0 }} here).</p>
{% else %}<p class="muted">no load samples were recorded</p>{% endif %}
</section>

<section id="balance">
<h2>Balance</h2>
{% if balance.check %}
<p><b>{{ balance.check.get("measured", balance.check.get("verdict")) }}</b>: {{ balance.check.get("reason") }}</p>
<p class="muted">{{ balance.figures_text }}</p>
{% endif %}
<table><tr><th>pod</th><th>sessions (judged window)</th><th>share</th><th>vs mean</th><th></th>
<th>whole run</th><th>share</th><th>status</th></tr>
{% for r in balance.rows %}<tr><td>{{ r.pod }}</td><td class="num">{{ r.window }}</td><td class="num">{{ r.share }}</td>
<td class="num">{{ r.vs_mean }}</td><td style="width:160px"><span class="bar" style="width: {{ r.bar }}%"></span></td>
<td class="num">{{ r.whole }}</td><td class="num">{{ r.whole_share }}</td><td>{{ r.status }}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no pod served a session</td></tr>{% endfor %}
</table>
</section>

<section id="files">
<h2>Files of this run</h2>
<ul>{% for f in files %}<li><a href="{{ f }}">{{ f }}</a></li>{% endfor %}</ul>
<p class="muted">report generated {{ generated }} by <code>harness report</code></p>
</section>
</body>
</html>
"""
)
