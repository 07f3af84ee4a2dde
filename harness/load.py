"""The load side's own health: was the load generator, not the system under test, the bottleneck?

Every Locust process of a swarm samples itself each second (harness.swarm): CPU (% of one core), event-loop lag
(how late a 50 ms sleep wakes up), resident memory and live sessions. A process is *busy* in a second when it is
above `CPU_LIMIT` or its loop lags more than `LAG_LIMIT_MS`; it is *saturated* when it is busy for more than
`BUSY_SHARE` of the swarm. Latencies measured by a saturated process measure the harness, not the system; its
sessions that timed out in a busy second are load-side errors, set apart from the checks, never counted as
stickiness failures.

Files: ``load-<name>.json`` per process, ``<name>`` as in that process's ``sessions-<name>.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness.client.records import SessionRecord

__all__ = [
    "BUSY_SHARE",
    "CPU_LIMIT",
    "LAG_LIMIT_MS",
    "is_load_timeout",
    "load_report",
    "load_side_filter",
    "read_load",
    "set_apart",
    "write_load",
]

CPU_LIMIT = 90.0  # % of one core
LAG_LIMIT_MS = 100.0
BUSY_SHARE = 0.10  # of the swarm's seconds

# sample columns
T, CPU, LAG, RSS, LIVE = range(5)

_TIMEOUT_WORDS = ("within", "no ack in", "timed out", "timeout")


def write_load(
    run_dir: Path,
    name: str,
    *,
    role: str,
    samples: list[list[float]],
    sessions: int,
    failure: str | None = None,
) -> None:
    """One process's samples; ``failure`` (the master's) says what of the load side went wrong."""
    data: dict[str, Any] = {"name": name, "role": role, "sessions": sessions, "failure": failure}
    data["columns"] = ["t", "cpu", "lag_ms", "rss", "live"]
    data["samples"] = samples
    (run_dir / f"load-{name}.json").write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


def read_load(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(run_dir.glob("load-*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def _busy(sample: list[float]) -> bool:
    return sample[CPU] > CPU_LIMIT or sample[LAG] > LAG_LIMIT_MS


def load_report(run_dir: Path) -> dict[str, Any]:
    """The ``load`` section of summary.json: processes, workers, sessions each ran, peaks, saturation."""
    processes = read_load(run_dir)
    per_process = []
    busy_seconds: dict[str, list[float]] = {}
    live_by_second: dict[int, float] = {}
    for proc in processes:
        samples = proc.get("samples") or []
        busy = [s[T] for s in samples if _busy(s)]
        share = len(busy) / len(samples) if samples else 0.0
        saturated = share > BUSY_SHARE
        busy_seconds[proc["name"]] = busy
        for s in samples:
            live_by_second[int(s[T])] = live_by_second.get(int(s[T]), 0) + s[LIVE]
        per_process.append(
            {
                "name": proc["name"],
                "role": proc.get("role", "lone"),
                "sessions": proc.get("sessions", 0),
                "samples": len(samples),
                "peak_cpu": round(max((s[CPU] for s in samples), default=0.0), 1),
                "mean_cpu": round(sum(s[CPU] for s in samples) / len(samples), 1) if samples else 0.0,
                "peak_lag_ms": round(max((s[LAG] for s in samples), default=0.0), 1),
                "peak_rss_mib": round(max((s[RSS] for s in samples), default=0) / 2**20, 1),
                "peak_live": int(max((s[LIVE] for s in samples), default=0)),
                "busy_share": round(share, 3),
                "saturated": saturated,
            }
        )
    making_load = [p for p in per_process if p["role"] != "master"]
    hot = [p for p in per_process if p["saturated"]]
    reason = None
    if hot:
        names = ", ".join(
            f"{p['name']} (busy {p['busy_share']:.0%} of the run, CPU peak {p['peak_cpu']:.0f} %)" for p in hot
        )
        reason = (
            f"load generator saturated: {names}; above {CPU_LIMIT:g} % CPU or loop lag over {LAG_LIMIT_MS:g} ms "
            f"for more than {BUSY_SHARE:.0%} of the run: latencies measure the harness, not the system"
        )
    failures = [str(p["failure"]) for p in processes if p.get("failure")]
    return {
        "failure": failures[0] if failures else None,
        "processes": len(per_process),
        "workers": sum(1 for p in per_process if p["role"] == "worker"),
        "sessions_per_process": {p["name"]: p["sessions"] for p in making_load},
        "peak_live_sessions": int(max(live_by_second.values(), default=0)),
        "per_process": per_process,
        "saturated": bool(hot),
        "reason": reason,
        "busy_seconds": {name: len(v) for name, v in busy_seconds.items()},
        "_busy": busy_seconds,  # not written: the seconds themselves, for set_apart
    }


def is_load_timeout(record: SessionRecord) -> bool:
    """A session that ended in a timeout and in nothing a sticky-session fault would show: one pod at most,
    no wrong-pod answer. (A missed upgrade is not one: a proxy that drops the upgrade shows the same.)"""
    if record.error is None or len(record.pods) > 1 or record.sticky_failures:
        return False
    text = record.error.lower()
    return any(word in text for word in _TIMEOUT_WORDS)


def load_side_filter(report: dict[str, Any]) -> Callable[[str, SessionRecord], bool]:
    """A predicate on (load process name, record): True for a record to set apart, a timeout of a saturated
    process in its busy seconds."""
    busy = {name: set(int(t) for t in seconds) for name, seconds in report.get("_busy", {}).items()}
    saturated = {p["name"] for p in report.get("per_process", []) if p["saturated"]}

    def load_side(name: str, record: SessionRecord) -> bool:
        if name not in saturated or not is_load_timeout(record):
            return False
        seconds = busy.get(name, set())
        return any(int(t) in seconds for t in range(int(record.started), int(record.ended or record.started) + 1))

    return load_side


def set_apart(sessions: Iterable[tuple[str, SessionRecord]], report: dict[str, Any]) -> tuple[list[SessionRecord], int]:
    """The sessions to judge, and how many were set apart: timeouts of a saturated process in its busy seconds."""
    load_side = load_side_filter(report)
    kept: list[SessionRecord] = []
    dropped = 0
    for name, record in sessions:
        if load_side(name, record):
            dropped += 1
        else:
            kept.append(record)
    return kept, dropped
