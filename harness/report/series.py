"""Time series of a run, from its records: what the report draws over time.

The summary says what happened over the whole run; people ask *when*. Sessions started and sessions live
(concurrent) per pod per time bucket show load moving when pods come and go, violations and disruptions per
bucket show whether breakage follows an event or runs throughout, and the clients' moves at each event show where
load went. Latency is the one series that cannot be rebuilt from session records (they keep no per-exchange
latencies), so the load generators keep a `LatencySeries` themselves: one mergeable `Histogram` per name per
wall-clock bucket, written as JSON next to the whole-run histograms and merged across processes like them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks.continuity import is_transport_error
from harness.checks.scaling import client_homes, sessions_by_client
from harness.client.records import SessionRecord
from harness.events import EventRecord
from harness.stats import Histogram

__all__ = [
    "LATENCY_SERIES_GLOB",
    "SERIES_SCHEMA",
    "EventMoves",
    "LatencySeries",
    "Timeline",
    "event_moves",
    "natural_key",
    "nice_bucket",
    "read_latency_series",
    "timeline",
]

SERIES_SCHEMA = 1
DEFAULT_BUCKET_S = 5.0
# not ``latency-*.json``: that pattern is the whole-run histograms, which `harness.runs` merges by name
LATENCY_SERIES_GLOB = "series-latency-*.json"
_NICE = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)


class LatencySeries:
    """Latency histograms per name per time bucket (bucket start = a multiple of ``bucket_s`` since the epoch)."""

    def __init__(self, bucket_s: float = DEFAULT_BUCKET_S) -> None:
        if not bucket_s > 0:
            raise ValueError(f"a bucket is a positive number of seconds, not {bucket_s!r}")
        self.bucket_s = float(bucket_s)
        self.series: dict[str, dict[float, Histogram]] = {}

    def bucket(self, at: float) -> float:
        return math.floor(at / self.bucket_s) * self.bucket_s

    def record(self, name: str, seconds: float, at: float) -> None:
        """One latency of ``seconds`` observed at wall-clock time ``at``."""
        buckets = self.series.setdefault(name, {})
        start = self.bucket(at)
        hist = buckets.get(start)
        if hist is None:
            hist = buckets[start] = Histogram()
        hist.record(seconds)

    def merge(self, other: LatencySeries) -> None:
        """Add another series (of the same bucket width) to this one."""
        if other.bucket_s != self.bucket_s:
            raise ValueError(f"cannot merge a series of {other.bucket_s:g} s buckets into one of {self.bucket_s:g} s")
        for name, buckets in other.series.items():
            mine = self.series.setdefault(name, {})
            for start, hist in buckets.items():
                if start in mine:
                    mine[start].merge(hist)
                else:
                    copy = Histogram()
                    copy.merge(hist)
                    mine[start] = copy

    def rebucket(self, bucket_s: float) -> LatencySeries:
        """The same samples in wider buckets (``bucket_s`` should be a multiple of this series' width)."""
        out = LatencySeries(bucket_s)
        for name, buckets in self.series.items():
            target = out.series.setdefault(name, {})
            for start, hist in buckets.items():
                key = out.bucket(start + 1e-9)
                if key not in target:
                    target[key] = Histogram()
                target[key].merge(hist)
        return out

    def names(self) -> list[str]:
        return sorted(self.series)

    def span(self) -> tuple[float, float] | None:
        starts = [start for buckets in self.series.values() for start in buckets]
        if not starts:
            return None
        return min(starts), max(starts) + self.bucket_s

    def percentile_series(self, name: str, p: float) -> list[tuple[float, float]]:
        """(bucket middle, p-th percentile in ms) for every non-empty bucket of ``name``, in time order."""
        buckets = self.series.get(name, {})
        return [
            (start + self.bucket_s / 2, buckets[start].percentile(p) * 1000)
            for start in sorted(buckets)
            if buckets[start].count
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SERIES_SCHEMA,
            "bucket_s": self.bucket_s,
            "series": {
                name: [[start, buckets[start].to_json()] for start in sorted(buckets)]
                for name, buckets in sorted(self.series.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencySeries:
        if data.get("schema") != SERIES_SCHEMA:
            raise ValueError(f"latency series schema {data.get('schema')!r} is not {SERIES_SCHEMA}")
        out = cls(float(data["bucket_s"]))
        for name, rows in data["series"].items():
            out.series[name] = {float(start): Histogram.from_json(hist) for start, hist in rows}
        return out


def read_latency_series(run_dir: Path) -> LatencySeries | None:
    """Every load generator's series of a run merged into one, or None when the run has none."""
    merged: LatencySeries | None = None
    for path in sorted(run_dir.glob(LATENCY_SERIES_GLOB)):
        part = LatencySeries.from_json(json.loads(path.read_text(encoding="utf-8")))
        if merged is None:
            merged = part
        elif part.bucket_s == merged.bucket_s:
            merged.merge(part)
        else:
            width = max(part.bucket_s, merged.bucket_s)
            merged = merged.rebucket(width)
            merged.merge(part.rebucket(width))
    return merged


def natural_key(name: str) -> list[Any]:
    """Sort key that puts app-2 before app-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def nice_bucket(span_s: float, target: int = 60, at_least: float = 1.0) -> float:
    """A round bucket width (1 s, 2 s, 5 s, 10 s, …) giving at most about ``target`` buckets over ``span_s``."""
    want = max(span_s / max(target, 1), at_least)
    for width in _NICE:
        if width >= want - 1e-9:
            return width
    return math.ceil(want / 3600.0) * 3600.0


@dataclass
class Timeline:
    """Counts per time bucket; times are seconds since ``t0``, ``starts[i]`` the start of bucket i."""

    t0: float
    bucket_s: float
    starts: list[float]
    started_per_pod: dict[str, list[int]] = field(default_factory=dict)  # by handshake pod, by start time
    violations: list[int] = field(default_factory=list)  # by end time (when the breakage was seen)
    disruptions: list[int] = field(default_factory=list)  # by end time
    errors: list[int] = field(default_factory=list)  # sessions that never reached a pod, by end time
    markers: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds since t0, id, label)
    # time-weighted mean of the sessions live on each pod (by handshake pod) during each bucket
    live_per_pod: dict[str, list[float]] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.starts[-1] + self.bucket_s if self.starts else 0.0

    def mid(self, index: int) -> float:
        return self.starts[index] + self.bucket_s / 2


class _Live:
    """Per pod, the time-weighted mean number of live sessions in each of ``count`` buckets of ``width`` seconds,
    from (pod, start, end) spans in seconds since the first bucket's start, added one at a time. In O(spans + pods *
    buckets): a span adds its partial overlaps to its first and last buckets and marks the full buckets between in
    a difference array, so a session live for the whole run costs no more than a short one, and none is kept."""

    def __init__(self, pods: Sequence[str], count: int, width: float) -> None:
        self.count, self.width = count, width
        self.partial = {pod: [0.0] * count for pod in pods}
        self.full = {pod: [0] * (count + 1) for pod in pods}

    def add(self, pod: str, start: float, end: float) -> None:
        count, width = self.count, self.width
        end = min(max(end, start), count * width)
        if end <= start:
            return
        first, last = min(count - 1, int(start // width)), min(count - 1, int(end // width))
        partial = self.partial[pod]
        if first == last:
            partial[first] += (end - start) / width
            return
        partial[first] += ((first + 1) * width - start) / width
        partial[last] += (end - last * width) / width
        self.full[pod][first + 1] += 1
        self.full[pod][last] -= 1

    def means(self) -> dict[str, list[float]]:
        out = {}
        for pod, row in self.partial.items():
            running, full = 0, self.full[pod]
            out[pod] = [value + (running := running + full[i]) for i, value in enumerate(row)]
        return out


def timeline(
    sessions: Iterable[SessionRecord],
    events: Sequence[EventRecord],
    *,
    pods: Sequence[str] = (),
    bucket_s: float | None = None,
    extra_times: Sequence[float] = (),
) -> Timeline:
    """Bucket the sessions of a run (whose ``disrupted_by`` is already assigned) from the first thing that
    happened (session, event or one of ``extra_times``) to the last. ``sessions`` is read twice (a list, or a
    source that reads the records again at each pass): once for the span and the pods, once for the counts; no
    record is kept."""
    t0: float | None = None
    last: float | None = None
    seen_pods: set[str] = set()
    for s in sessions:
        t0 = s.started if t0 is None else min(t0, s.started)
        end = s.ended or s.started
        last = end if last is None else max(last, end)
        if s.pod is not None:
            seen_pods.add(s.pod)
    others = [e.started for e in events] + list(extra_times)
    if others:
        t0 = min([*others] + ([] if t0 is None else [t0]))
    if t0 is None:
        return Timeline(0.0, bucket_s or DEFAULT_BUCKET_S, [])
    last = max([e.ended for e in events] + [*extra_times, t0 + 1e-3] + ([] if last is None else [last]))
    width = bucket_s or nice_bucket(last - t0)
    count = max(1, math.ceil((last - t0) / width + 1e-9))
    starts = [i * width for i in range(count)]

    def index(at: float) -> int:
        return min(count - 1, max(0, int((at - t0) // width)))

    order = sorted({*pods, *seen_pods}, key=natural_key)
    per_pod = {pod: [0] * count for pod in order}
    tl = Timeline(t0, width, starts, per_pod, [0] * count, [0] * count, [0] * count)
    live = _Live(order, count, width)
    for s in sessions:
        if s.pod is not None:
            if s.pod not in per_pod:  # a source that changed between the passes: the pod is charted all the same
                per_pod[s.pod] = [0] * count
                live.partial[s.pod], live.full[s.pod] = [0.0] * count, [0] * (count + 1)
            per_pod[s.pod][index(s.started)] += 1
            live.add(s.pod, s.started - t0, (s.ended or s.started) - t0)
        seen = index(s.ended or s.started)
        if s.disrupted_by is not None:
            tl.disruptions[seen] += 1
        elif is_transport_error(s):
            tl.errors[seen] += 1
        elif s.violation is not None:
            tl.violations[seen] += 1
    tl.markers = [(e.started - t0, e.id, e.label) for e in events]
    tl.live_per_pod = live.means()
    return tl


@dataclass
class EventMoves:
    """Where clients went at one event: each compared client's pod before → its pod after, counted."""

    id: str
    label: str
    removed: list[str]
    added: list[str]
    moves: dict[str, dict[str, int]]  # pod before → pod after → clients

    @property
    def compared(self) -> int:
        return sum(n for row in self.moves.values() for n in row.values())

    @property
    def stayed(self) -> int:
        return sum(row.get(pod, 0) for pod, row in self.moves.items())

    def pods(self) -> tuple[list[str], list[str]]:
        """The pods that appear before (rows) and after (columns), sorted."""
        rows = sorted(self.moves, key=natural_key)
        columns = sorted({pod for row in self.moves.values() for pod in row}, key=natural_key)
        return rows, columns


def event_moves(sessions: Iterable[SessionRecord], events: Sequence[EventRecord]) -> list[EventMoves]:
    """Per timeline entry, the same comparison as the scaling report: a client's home before a planned event (its
    last session started before it that worked or that the event broke; ``disrupted_by`` already assigned) against
    its first good session after the event settled and before the next planned event. An unplanned exit moves
    nobody on purpose: its entry has no moves."""
    planned = [e for e in events if e.planned]
    by_client = sessions_by_client(sessions) if planned else {}  # the one place the report holds records
    window_ends = {e.id: planned[i + 1].started if i + 1 < len(planned) else math.inf for i, e in enumerate(planned)}
    out = []
    for event in events:
        moves: dict[str, dict[str, int]] = {}
        if event.planned:
            for before, after in client_homes(by_client, event, window_ends[event.id]).values():
                row = moves.setdefault(before, {})
                row[after] = row.get(after, 0) + 1
        out.append(EventMoves(event.id, event.label, list(event.removed), list(event.added), moves))
    return out
