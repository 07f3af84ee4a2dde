"""Runs: where their records live, how a finished swarm is judged, and the summary every run leaves behind.

A run has an id (time, topology and a random suffix) carried by everything it starts, and a directory
``reports/<run-id>/`` holding the session records of each load-generator process, their latency histograms,
the cluster's logs, and ``summary.json``. ``reports/latest`` points at the newest judged run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.checks import CheckResult, Thresholds, compare
from harness.checks.balance import BalanceTally
from harness.checks.findings import IDLE_TIMEOUT, PROXY_MISMATCH, idle_timeout_finding, read_network
from harness.checks.scaling import SLACK, assign_disruption, exit_report, hints_for, scaling_report
from harness.checks.verdict import Tally
from harness.client.records import SessionRecord, read_run_sessions_by_process
from harness.events import EventRecord, read_event_records
from harness.interrupts import signal_name
from harness.load import load_report, load_side_filter
from harness.stats import Histogram, summarize
from harness.topology import Topology

__all__ = [
    "SUMMARY_SCHEMA",
    "Judgement",
    "cluster_link",
    "default_reports_dir",
    "judge",
    "mark_interrupted",
    "new_run_id",
]

log = logging.getLogger(__name__)

SUMMARY_SCHEMA = 1
_FINDING_TEXT = {
    IDLE_TIMEOUT: "the balancer cut sessions for idleness",
    PROXY_MISMATCH: "the balancer and the tier disagree on the PROXY header",
}


def default_reports_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "reports"


def new_run_id(topology: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{topology}-{secrets.token_hex(2)}"


def cluster_link(reports_dir: Path, name: str) -> Path:
    """Where ``harness up --name NAME`` leaves a pointer to its run directory."""
    return reports_dir / ".clusters" / name


def _point(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    tmp.replace(link)


def merged_latencies(run_dir: Path) -> dict[str, Histogram]:
    merged: dict[str, Histogram] = {}
    for path in sorted(run_dir.glob("latency-*.json")):
        for name, data in json.loads(path.read_text(encoding="utf-8")).items():
            hist = Histogram.from_json(data)
            if name in merged:
                merged[name].merge(hist)
            else:
                merged[name] = hist
    return merged


class _SteadyBalance:
    """Balance at steady state: after the last event when enough sessions started then, else before the first."""

    def __init__(self, events: Sequence[EventRecord]) -> None:
        self.first, self.last = events[0], events[-1]
        self.settled = self.last.ended + SLACK
        self.before, self.after = BalanceTally(), BalanceTally()

    def add(self, record: SessionRecord) -> None:
        if record.started >= self.settled:
            self.after.add(record)
        if record.started < self.first.started:
            self.before.add(record)

    def result(self, pods: list[str], th: Thresholds) -> CheckResult:
        if sum(self.after.served.values()) >= th.min_balance_sessions:
            result = self.after.result(pods, th)
            window = f"sessions after the last event ({self.last.label})"
        else:
            first = self.first
            app_pods = first.pods_before if first.target == "app" or first.action.startswith("lb") else pods
            result = self.before.result(app_pods, th)
            window = f"sessions before the first event ({first.label})"
        return replace(result, figures={**result.figures, "window": window})


def mark_interrupted(run_dir: Path, signum: int) -> dict[str, Any]:
    """A run judged in full and then interrupted (during its clean-up): its summary marked interrupted like any
    other, the verdict it had kept as a note, and its report written again. Returns the summary."""
    path = run_dir / "summary.json"
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if summary.get("interrupted") is None:
        was = summary.get("verdict")
        summary.update(interrupted=signal_name(signum), verdict="interrupted", exit_code=128 + signum)
        note = f"interrupted by {signal_name(signum)} after it was judged ({was}): every session had been measured"
        summary["notes"] = [*summary.get("notes", []), note]
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        from harness.report import write_report

        write_report(run_dir)
    return summary


def _verdict_word(ok: bool, harness_failure: str | None, interrupted: int | None) -> str:
    if interrupted is not None:
        return "interrupted"
    if harness_failure:
        return "not judged"
    return "as expected" if ok else "differs from expected"


@dataclass
class Judgement:
    summary: dict[str, Any]
    text: str
    ok: bool
    harness_failure: str | None = None  # the harness's own machinery failed: the run is not judged
    interrupted: int | None = None  # the signal that stopped the run before its end: not judged either

    @property
    def exit_code(self) -> int:
        return _exit_code(self.ok, self.harness_failure, self.interrupted)


def _exit_code(ok: bool, harness_failure: str | None, interrupted: int | None) -> int:
    """128 + the signal for an interrupted run, 2 for one not judged, 0 as expected, 1 not."""
    if interrupted is not None:
        return 128 + interrupted
    if harness_failure:
        return 2
    return 0 if ok else 1


def judge(
    run_dir: Path,
    topology: Topology,
    *,
    backend: str,
    pods: Sequence[str],
    removed_pods: Sequence[str] = (),
    thresholds: Thresholds | None = None,
    meta: dict[str, Any] | None = None,
    reports_dir: Path | None = None,
    client_addresses: str = "unique",
    harness_failure: str | None = None,
    interrupted: int | None = None,
    proxy_mismatch: str | None = None,
) -> Judgement:
    """Read every session record of a run, run the checks, compare with the topology's expected verdict, and
    write ``summary.json`` (and point ``reports/latest`` at the run).

    ``harness_failure`` (an event that did not take effect, the network daemon or the load generator dying)
    means the run says nothing about the topology: the summary and the one-line text say so, exit code 2. A pod
    that exited on its own is a finding about the system under test: the verdict differs, whatever the checks.
    ``interrupted`` (the signal that stopped the run early) writes what was measured so far, marked
    interrupted and not judged: exit code 128 + the signal."""
    th = thresholds or Thresholds()
    if (meta or {}).get("session_length_s"):
        # long sessions: few per client, so a client is judged on fewer (the many clients make up for it)
        th = replace(th, affinity_run=th.affinity_run_long)
    load = load_report(run_dir)
    harness_failure = harness_failure or load["failure"]
    load_section = {k: v for k, v in load.items() if not k.startswith("_")}
    timeline = read_event_records(run_dir)
    events = [e for e in timeline if e.planned]
    removed = list(dict.fromkeys([*removed_pods, *(p for e in timeline for p in e.removed)]))
    # balance is judged over the pods that were there at the end (steady state); pods removed on the way are
    # still known pods for the other checks
    added = list(dict.fromkeys(p for e in events for p in e.added))
    # The records stream by once: a saturated load process's timeouts in its busy seconds are set apart (the load
    # side's, not the topology's), each other record is marked with the event that disrupted it and folded into
    # the checks' tallies. Only a run with events keeps its records (slimmed): the scaling report reads each
    # client's history around each event.
    is_load_side = load_side_filter(load)
    tally = Tally()
    steady = _SteadyBalance(events) if events else None
    kept: list[SessionRecord] = []
    load_side = 0
    cut = 0  # broken by a transport error, no wrong-pod answer, no event to explain it
    for name, record in read_run_sessions_by_process(run_dir):
        if is_load_side(name, record):
            load_side += 1
            continue
        assign_disruption(record, timeline)
        tally.add(record)
        if record.error and record.pods and not record.sticky_failures and record.disrupted_by is None:
            cut += 1
        if steady is not None:
            steady.add(record)
            kept.append(record.slimmed())
    load_section["load_side_timeouts"] = load_side
    results = tally.results(list(pods), th, removed_pods=removed, added_pods=added)
    if steady is not None:
        results["balance"] = steady.result(list(pods), th)
    converged_on = tally.converged(list(pods))
    converged = converged_on is not None and "converged" in topology.expected_with
    expected = topology.expected_verdicts(client_addresses, converged=converged)
    outcome = compare(results, expected)
    begin = (meta or {}).get("started")
    unplanned = exit_report(tally.continuity.disrupted, timeline, begin)
    crashes = [u for u in unplanned if u["blame"] != "harness"]
    findings = [f for f in (idle_timeout_finding(read_network(run_dir), topology, cut),) if f is not None]
    if proxy_mismatch is not None:  # seen by the backend, asking the tier pods directly (Cluster.proxy_mismatch)
        findings.append({"kind": PROXY_MISMATCH, "reading": f"PROXY mismatch: {proxy_mismatch}"})
    # a pod that crashed under load, a balancer that cuts quiet sessions: findings, whatever the checks say
    ok = outcome.ok and not crashes and not findings
    if crashes:
        outcome = replace(outcome, notes=[*outcome.notes, *(f"UNPLANNED: {u['reading']}" for u in crashes)])
    if findings:
        outcome = replace(outcome, notes=[*outcome.notes, *(f"FINDING: {f['reading']}" for f in findings)])
    if converged:
        luck = (
            "the run converged on one pod, so the topology's expected verdict for that luck applies "
            "(expected_with: converged); other seeds show how the topology breaks"
        )
        outcome = replace(outcome, notes=[*outcome.notes, luck])
    latency = {name: summarize(h) for name, h in sorted(merged_latencies(run_dir).items())}
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "run_id": run_dir.name,
        "backend": backend,
        "topology": topology.name,
        "description": topology.description.strip(),
        **(meta or {}),
        "sessions": tally.sessions,
        "clients": tally.clients,
        "pods": list(pods),
        "removed_pods": removed,
        "converged_on": converged_on,  # the one pod that served every session, when it was one of several
        "expected_with_converged": converged,
        "events": scaling_report(kept, events, hints_for(topology)),
        "unplanned": unplanned,
        "findings": findings,
        "harness_failure": harness_failure,
        "interrupted": signal_name(interrupted) if interrupted is not None else None,
        "checks": {
            name: {
                **result.to_json(),
                "measured": result.verdict,
                "expected": expected.get(name, "n/a"),
                "matches": outcome.checks[name].matches,
            }
            for name, result in results.items()
        },
        "notes": list(outcome.notes),
        "latency_ms": latency,
        "load": load_section,
        "verdict": _verdict_word(ok, harness_failure, interrupted),
        "exit_code": _exit_code(ok, harness_failure, interrupted),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    from harness.report import write_report

    write_report(run_dir)
    _point((reports_dir or run_dir.parent) / "latest", run_dir)
    if interrupted is not None:
        text = (
            f"INTERRUPTED by {signal_name(interrupted)}: {summary['sessions']} sessions measured so far, not judged "
            f"(summary in {run_dir / 'summary.json'})"
        )
        return Judgement(summary=summary, text=text, ok=False, harness_failure=harness_failure, interrupted=interrupted)
    if harness_failure:
        text = f"NOT JUDGED: {harness_failure} (the harness's own failure, not the topology's)"
        if load["saturated"]:
            text += f"\nSATURATED LOAD GENERATOR: {load['reason']}"
        return Judgement(summary=summary, text=text, ok=False, harness_failure=harness_failure)
    text = "".join(f"UNPLANNED: {u['reading']}\n" for u in unplanned)
    if load["saturated"]:
        text += f"SATURATED LOAD GENERATOR: {load['reason']}"
        text += f"; {load_side} timeouts set apart as load-side errors\n" if load_side else "\n"
    text += outcome.render_text()
    for report in summary["events"]:
        text += f"\nevent {report['reading']}"
    if latency:
        lines = [
            f"  {name:<28} n={v['count']:<6} p50={v['p50']:.1f} ms  p99={v['p99']:.1f} ms"
            for name, v in latency.items()
        ]
        text += "\nlatency:\n" + "\n".join(lines)
    if crashes and outcome.ok:
        text += "\nNOT as expected: a pod exited on its own during the run (see UNPLANNED above)"
    elif findings and outcome.ok:
        text += "\nNOT as expected: " + "; ".join(_FINDING_TEXT[f["kind"]] for f in findings) + " (see FINDING above)"
    return Judgement(summary=summary, text=text, ok=ok)
