"""Compare two runs of one topology: what got worse, what got better, and whether that is a regression.

A nightly run is read against a baseline run, and CI needs one answer: did this change make stickiness,
balance or latency worse? Only the summaries are compared, so a baseline can be an old ``summary.json`` kept
as an artefact. Noise must not fail a build, so every numeric rule has a tolerance: latency must rise by more
than a relative threshold *and* an absolute floor, rates by more than a few points. A check that stops meeting
its expectation is always a regression; so is one that disappeared. Changes that are worse but do not decide
the exit code (other latencies, events) are listed as such.

The nightly job compares whole reports directories (one run per test, per topology and kube-proxy mode), so
``compare_dirs`` pairs the runs of two directories by what they ran — topology, backend, kube-proxy mode, client
addresses and the test (or, for runs that do not name one, the shape of their timeline) — and compares each pair.
A run without a partner is listed but is no regression: a new test has no baseline yet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.report.junit import check_matches

__all__ = [
    "Change",
    "DirComparison",
    "FoundRun",
    "Pair",
    "PairKey",
    "RunComparison",
    "Tolerances",
    "compare_dirs",
    "compare_runs",
    "find_runs",
    "is_run_dir",
    "load_summary",
    "pair_key",
]


@dataclass(frozen=True)
class Tolerances:
    """How much worse a figure may get before it counts."""

    latency_threshold: float = 0.2  # relative rise of a p99 latency (0.2 = 20 %)
    latency_floor_ms: float = 5.0  # ... and by at least this many milliseconds
    latency_names: tuple[str, ...] = ("handshake",)  # latencies whose rise is a regression; others are listed
    violation_rate: float = 0.01  # absolute rise of a violation/broken rate (from a non-zero baseline)
    jain: float = 0.05  # absolute drop of Jain's fairness index
    max_mean_ratio: float = 0.1  # relative rise of the busiest pod's share (max/mean)

    def __post_init__(self) -> None:
        if self.latency_threshold < 0 or self.latency_floor_ms < 0:
            raise UsageError(
                f"latency threshold ({self.latency_threshold}) and floor ({self.latency_floor_ms} ms) must be >= 0"
            )
        if not 0 <= self.violation_rate <= 1 or not 0 <= self.jain <= 1 or self.max_mean_ratio < 0:
            raise UsageError("violation_rate and jain tolerances are fractions in [0, 1]; max_mean_ratio is >= 0")


@dataclass(frozen=True)
class Change:
    """One figure that moved: what, from what to what, in words, and whether it decides the exit code."""

    subject: str
    baseline: Any
    run: Any
    text: str
    regression: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "baseline": self.baseline,
            "run": self.run,
            "text": self.text,
            "regression": self.regression,
        }


@dataclass
class RunComparison:
    baseline_id: str
    run_id: str
    topology: str
    worse: list[Change] = field(default_factory=list)
    better: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.worse if c.regression]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressed else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_id,
            "run": self.run_id,
            "topology": self.topology,
            "regressed": self.regressed,
            "worse": [c.to_json() for c in self.worse],
            "better": [c.to_json() for c in self.better],
            "notes": list(self.notes),
        }

    def render_text(self) -> str:
        lines = [f"compare {self.run_id} against baseline {self.baseline_id} (topology {self.topology})"]
        if self.worse:
            lines.append("worse:")
            lines += [f"  {'REGRESSION' if c.regression else 'worse     '}  {c.text}" for c in self.worse]
        if self.better:
            lines.append("better:")
            lines += [f"  better      {c.text}" for c in self.better]
        if not self.worse and not self.better:
            lines.append("nothing changed beyond the tolerances")
        lines += [f"note: {n}" for n in self.notes]
        n = len(self.regressions)
        lines.append(f"{n} regression{'s' if n != 1 else ''}" if n else "no regression")
        return "\n".join(lines)


def load_summary(source: Path | Mapping[str, Any]) -> dict[str, Any]:
    """A run's summary from a run directory, a ``summary.json`` path, or an already-loaded mapping."""
    if isinstance(source, Mapping):
        return dict(source)
    path = source / "summary.json" if source.is_dir() else source
    if not path.is_file():
        raise UsageError(f"no summary at {path}: judge the run first with `harness report {source}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(
            f"{path} is not valid JSON ({exc}): rebuild it with `harness report {path.parent} --rejudge`"
        ) from exc
    if not isinstance(data, dict) or "checks" not in data:
        raise UsageError(f"{path} is not a run summary (no checks): point at a run directory or its summary.json")
    return data


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"


def _compare_verdicts(name: str, b: Mapping[str, Any], r: Mapping[str, Any], out: RunComparison) -> None:
    bv, rv = b.get("measured", b.get("verdict")), r.get("measured", r.get("verdict"))
    expected = r.get("expected", "n/a")
    if b.get("expected", "n/a") != expected:
        out.notes.append(f"{name}: expected verdict changed from {b.get('expected')} to {expected}")
    bm, rm = check_matches(b), check_matches(r)
    subject = f"{name} verdict"
    if expected not in (None, "n/a"):
        if bm and not rm:
            text = f"{name}: {bv} → {rv}, now differs from the expected {expected}: {r.get('reason', '')}"
            out.worse.append(Change(subject, bv, rv, text, regression=True))
        elif rm and not bm:
            out.better.append(Change(subject, bv, rv, f"{name}: {bv} → {rv}, now as expected ({expected})"))
        return
    if bv == "pass" and rv != "pass":
        out.worse.append(Change(subject, bv, rv, f"{name}: pass → {rv}: {r.get('reason', '')}", regression=True))
    elif bv != "pass" and rv == "pass":
        out.better.append(Change(subject, bv, rv, f"{name}: {bv} → pass"))


def _compare_rate(
    name: str, key: str, what: str, b: Mapping[str, Any], r: Mapping[str, Any], tol: float, out: RunComparison
) -> None:
    bf, rf = b.get("figures", {}), r.get("figures", {})
    if not bf.get("judged") or not rf.get("judged") or key not in bf or key not in rf:
        return
    br, rr = float(bf[key]), float(rf[key])
    subject = f"{name} {key}"
    text = f"{name}: {what} {_pct(br)} → {_pct(rr)} ({bf['judged']} → {rf['judged']} judged)"
    if rr > br:
        beyond = (br == 0 and rr > 0) or rr - br > tol
        suffix = "" if beyond else f", within the tolerance of {_pct(tol)}"
        out.worse.append(Change(subject, br, rr, text + suffix, regression=beyond))
    elif rr < br and (rr == 0 or br - rr > tol):
        out.better.append(Change(subject, br, rr, text))


def _compare_balance(b: Mapping[str, Any], r: Mapping[str, Any], tol: Tolerances, out: RunComparison) -> None:
    if "n/a" in (b.get("measured", b.get("verdict")), r.get("measured", r.get("verdict"))):
        return  # too few sessions in one of the runs for the figures to mean anything
    bf, rf = b.get("figures", {}), r.get("figures", {})
    if "jain" in bf and "jain" in rf:
        bj, rj = float(bf["jain"]), float(rf["jain"])
        text = f"balance: Jain index {bj:.3f} → {rj:.3f}"
        if rj < bj - tol.jain:
            out.worse.append(Change("balance jain", bj, rj, text, regression=True))
        elif rj > bj + tol.jain:
            out.better.append(Change("balance jain", bj, rj, text))
    if "max_mean_ratio" in bf and "max_mean_ratio" in rf:
        bx, rx = float(bf["max_mean_ratio"]), float(rf["max_mean_ratio"])
        text = f"balance: busiest pod max/mean {bx:.2f} → {rx:.2f}"
        if rx > bx * (1 + tol.max_mean_ratio):
            out.worse.append(Change("balance max_mean_ratio", bx, rx, text, regression=True))
        elif rx < bx * (1 - tol.max_mean_ratio):
            out.better.append(Change("balance max_mean_ratio", bx, rx, text))


def _compare_latency(b: Mapping[str, Any], r: Mapping[str, Any], tol: Tolerances, out: RunComparison) -> None:
    for name in sorted(set(b) | set(r)):
        bp = (b.get(name) or {}).get("p99")
        rp = (r.get(name) or {}).get("p99")
        if bp is None or rp is None:
            if name in tol.latency_names and (bp is None) != (rp is None):
                out.notes.append(f"{name} latency: measured in {'the run' if bp is None else 'the baseline'} only")
            continue
        bp, rp = float(bp), float(rp)
        delta = rp - bp
        rel = delta / bp if bp > 0 else float("inf") if delta > 0 else 0.0
        text = f"{name} p99 {bp:.1f} ms → {rp:.1f} ms ({'+' if delta >= 0 else ''}{rel * 100:.0f}%)"
        if delta > tol.latency_floor_ms and rel > tol.latency_threshold:
            regression = name in tol.latency_names
            note = "" if regression else " (listed, not a regression: only " + ", ".join(tol.latency_names) + " is)"
            out.worse.append(Change(f"{name} p99", bp, rp, text + note, regression=regression))
        elif -delta > tol.latency_floor_ms and -rel > tol.latency_threshold / (1 + tol.latency_threshold):
            out.better.append(Change(f"{name} p99", bp, rp, text))


def _compare_events(b: list[Mapping[str, Any]], r: list[Mapping[str, Any]], out: RunComparison) -> None:
    base = {e.get("label"): e for e in b}
    if [e.get("label") for e in b] != [e.get("label") for e in r]:
        out.notes.append("the runs had different event timelines; events compared by label where they match")
    for event in r:
        old = base.get(event.get("label"))
        if old is None:
            continue
        label = event.get("label")
        for key, what in (("disrupted_sessions", "live sessions disrupted"), ("remap_excess", "clients remapped")):
            bv, rv = old.get(key), event.get(key)
            if isinstance(bv, int) and isinstance(rv, int) and rv != bv:
                text = f"event {label}: {what} {bv} → {rv}" + (" beyond the minimum" if key == "remap_excess" else "")
                (out.worse if rv > bv else out.better).append(Change(f"event {label} {key}", bv, rv, text))
        if event.get("error") and not old.get("error"):
            out.worse.append(Change(f"event {label}", None, event["error"], f"event {label} failed: {event['error']}"))


def compare_runs(
    baseline: Path | Mapping[str, Any],
    run: Path | Mapping[str, Any],
    *,
    latency_threshold: float = 0.2,
    tolerances: Tolerances | None = None,
) -> RunComparison:
    """What got worse and better from ``baseline`` to ``run`` (run directories, summary files or summaries).

    Raises UsageError when the two are not comparable (other topology, other summary schema).
    """
    tol = tolerances or Tolerances(latency_threshold=latency_threshold)
    b, r = load_summary(baseline), load_summary(run)
    if b.get("schema") != r.get("schema"):
        raise UsageError(
            f"the summaries have schemas {b.get('schema')} and {r.get('schema')}: rebuild the older one with "
            "`harness report RUN` under this version"
        )
    if b.get("topology") != r.get("topology"):
        raise UsageError(
            f"the baseline ran topology {b.get('topology')!r} and the run {r.get('topology')!r}: "
            "compare two runs of the same topology"
        )
    out = RunComparison(str(b.get("run_id", "baseline")), str(r.get("run_id", "run")), str(r.get("topology")))
    if b.get("backend") != r.get("backend"):
        out.notes.append(f"backends differ: {b.get('backend')} and {r.get('backend')}")
    b_checks, r_checks = b.get("checks", {}), r.get("checks", {})
    for name, bc in b_checks.items():
        rc = r_checks.get(name)
        if rc is None:
            text = f"{name}: judged in the baseline, missing from the run"
            out.worse.append(Change(f"{name} verdict", bc.get("measured", bc.get("verdict")), None, text, True))
            continue
        _compare_verdicts(name, bc, rc, out)
    out.notes += [f"{name}: a check the baseline did not have" for name in r_checks if name not in b_checks]
    if "continuity" in b_checks and "continuity" in r_checks:
        bc, rc = b_checks["continuity"], r_checks["continuity"]
        _compare_rate("continuity", "violation_rate", "violations", bc, rc, tol.violation_rate, out)
    if "affinity" in b_checks and "affinity" in r_checks:
        ba, ra = b_checks["affinity"], r_checks["affinity"]
        _compare_rate("affinity", "broken_rate", "clients that moved", ba, ra, tol.violation_rate, out)
    if "balance" in b_checks and "balance" in r_checks:
        _compare_balance(b_checks["balance"], r_checks["balance"], tol, out)
    _compare_latency(b.get("latency_ms") or {}, r.get("latency_ms") or {}, tol, out)
    _compare_events(list(b.get("events") or []), list(r.get("events") or []), out)
    bs, rs = b.get("sessions") or 0, r.get("sessions") or 0
    if bs and rs < bs / 2:
        out.notes.append(f"the run has {rs} sessions against the baseline's {bs}: figures may not be comparable")
    return out


# --- directories of runs --------------------------------------------------------------------------------------

# entries of a reports directory that are not runs of their own: ``latest`` points at a run that is listed under
# its own name (and an artefact upload may have turned the link into a copy); hidden entries (``.clusters/``,
# ``.latest.<pid>``) are the harness's bookkeeping
_NOT_RUNS = ("latest",)


@dataclass(frozen=True)
class PairKey:
    """What a run ran, as far as comparing goes: two runs pair when their keys are equal.

    ``case`` is the test that made the run when the summary names it; otherwise the run's shape (its event labels
    and session length) stands in for it, so that a scaling run is not read against a steady one.
    """

    topology: str
    backend: str
    kube_proxy_mode: str | None
    client_addresses: str
    case: str | None
    events: tuple[str, ...] = ()
    session_length_s: float = 0.0

    @property
    def text(self) -> str:
        where = f"{self.backend}/{self.kube_proxy_mode}" if self.kube_proxy_mode else self.backend
        parts = [self.topology, where, f"{self.client_addresses} addresses"]
        if self.case is not None:
            parts.append(f"case {self.case}")
        else:
            parts.append("events " + " + ".join(self.events) if self.events else "no events")
            if self.session_length_s:
                parts.append(f"sessions of {self.session_length_s:g}s")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topology": self.topology,
            "backend": self.backend,
            "kube_proxy_mode": self.kube_proxy_mode,
            "client_addresses": self.client_addresses,
            "case": self.case,
        }
        if self.case is None:
            out.update(events=list(self.events), session_length_s=self.session_length_s)
        return out


def pair_key(summary: Mapping[str, Any]) -> PairKey:
    """The key a run pairs by (see PairKey)."""
    common = (
        str(summary.get("topology")),
        str(summary.get("backend")),
        summary.get("kube_proxy_mode"),
        str(summary.get("client_addresses", "unique")),
    )
    case = summary.get("case")
    if case is not None:
        return PairKey(*common, case=str(case))
    labels = tuple(str(e.get("label")) for e in summary.get("events") or [])
    # an older summary has no session length and a newer one may hold None for the default: both mean 0
    return PairKey(*common, case=None, events=labels, session_length_s=float(summary.get("session_length_s") or 0))


@dataclass(frozen=True)
class FoundRun:
    """A run found in a directory of runs, with its summary."""

    path: Path
    summary: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def key(self) -> PairKey:
        return pair_key(self.summary)

    @property
    def verdict(self) -> str:
        return str(self.summary.get("verdict", "not judged"))

    @property
    def newness(self) -> tuple[float, str]:
        """Order of runs with the same key: by start time, then by id (run ids begin with the time)."""
        started = self.summary.get("started")
        at = float(started) if isinstance(started, int | float) and not isinstance(started, bool) else float("-inf")
        return (at, self.run_id)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run_id, "path": str(self.path), "key": self.key.to_json(), "verdict": self.verdict}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "summary.json").is_file()


def _run_entries(path: Path) -> tuple[list[Path], list[Path]]:
    """The run directories right under ``path`` (each once, links to one run included once) and the other
    subdirectories (no summary.json: a run that was never judged, or something else)."""
    runs: list[Path] = []
    others: list[Path] = []
    seen: set[Path] = set()
    children = [c for c in path.iterdir() if not c.name.startswith(".") and c.name not in _NOT_RUNS]
    for child in sorted(children, key=lambda c: (c.is_symlink(), c.name)):  # a run's own name before a link to it
        if not child.is_dir():
            continue
        real = child.resolve()
        if real in seen:
            continue
        seen.add(real)
        (runs if (child / "summary.json").is_file() else others).append(child)
    return runs, others


def find_runs(path: Path) -> tuple[list[FoundRun], list[Path]]:
    """The runs of a reports directory (or of a run directory: a reports directory of one run) with their
    summaries, and the subdirectories that are no judged run. Raises UsageError when ``path`` holds no run or a
    summary cannot be read (the message names the file)."""
    if is_run_dir(path):
        return [FoundRun(path, load_summary(path))], []
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory: give a run directory, a reports directory or a summary.json")
    dirs, others = _run_entries(path)
    if not dirs:
        raise UsageError(
            f"{path} is neither a run directory (no summary.json) nor a reports directory (no subdirectory with a "
            f"summary.json): judge a run with `harness report RUN`"
        )
    return [FoundRun(d, load_summary(d)) for d in dirs], others


@dataclass
class Pair:
    """A baseline run and the run with the same key, and what changed between them."""

    key: PairKey
    baseline: FoundRun
    run: FoundRun
    comparison: RunComparison

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key.to_json(),
            "pair": self.key.text,
            "baseline": self.baseline.run_id,
            "run": self.run.run_id,
            "baseline_verdict": self.baseline.verdict,
            "run_verdict": self.run.verdict,
            "regressions": len(self.comparison.regressions),
            "comparison": self.comparison.to_json(),
        }


@dataclass
class DirComparison:
    """Every pair of runs of two directories compared, and the runs that were not."""

    baseline_dir: Path
    run_dir: Path
    pairs: list[Pair]
    only_in_baseline: list[FoundRun] = field(default_factory=list)
    only_in_run: list[FoundRun] = field(default_factory=list)
    # (side, the run left out, the newer run with the same key that was compared)
    ignored: list[tuple[str, FoundRun, FoundRun]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # subdirectories without a summary.json

    @property
    def regressions(self) -> list[Change]:
        return [c for p in self.pairs for c in p.comparison.regressions]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressed else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": str(self.baseline_dir),
            "run": str(self.run_dir),
            "regressed": self.regressed,
            "pairs": [p.to_json() for p in self.pairs],
            "only_in_baseline": [r.to_json() for r in self.only_in_baseline],
            "only_in_run": [r.to_json() for r in self.only_in_run],
            "ignored": [{"side": side, **left.to_json(), "newer": used.run_id} for side, left, used in self.ignored],
            "skipped": [str(p) for p in self.skipped],
        }

    def render_text(self) -> str:
        lines = [
            f"compare {self.run_dir} against baseline {self.baseline_dir}: "
            f"{len(self.pairs)} pair{'s' if len(self.pairs) != 1 else ''} of runs"
        ]
        lines += _table(self.pairs)
        regressed = [p for p in self.pairs if p.comparison.regressed]
        if regressed:
            lines.append("regressions:")
            for p in regressed:
                lines.append(f"  {p.key.text}:")
                lines += [f"    {line}" for line in p.comparison.render_text().splitlines()]
        lines += [f"only in baseline: {r.run_id} ({r.key.text})" for r in self.only_in_baseline]
        lines += [f"only in run: {r.run_id} ({r.key.text})" for r in self.only_in_run]
        lines += [
            f"ignored ({side}): {left.run_id}, older than {used.run_id} with the same key ({left.key.text})"
            for side, left, used in self.ignored
        ]
        lines += [f"skipped: {p} (no summary.json)" for p in self.skipped]
        n = len(self.regressions)
        lines.append(
            f"{n} regression{'s' if n != 1 else ''} in {len(regressed)} of {len(self.pairs)} pairs"
            if n
            else f"no regression in {len(self.pairs)} pair{'s' if len(self.pairs) != 1 else ''}"
        )
        return "\n".join(lines)


def _short(text: str, width: int = 72) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(pairs: Sequence[Pair]) -> list[str]:
    header = ("pair", "baseline", "run", "baseline verdict", "run verdict", "regressions", "first regression")
    rows = [
        (
            p.key.text,
            p.baseline.run_id,
            p.run.run_id,
            p.baseline.verdict,
            p.run.verdict,
            str(len(p.comparison.regressions)),
            _short(p.comparison.regressions[0].text) if p.comparison.regressed else "-",
        )
        for p in pairs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in [header, *rows]
    ]


def _newest_by_key(
    runs: Sequence[FoundRun], side: str
) -> tuple[dict[PairKey, FoundRun], list[tuple[str, FoundRun, FoundRun]]]:
    """One run per key: the newest; the older ones with the same key are left out, and said so."""
    groups: dict[PairKey, list[FoundRun]] = {}
    for r in runs:
        groups.setdefault(r.key, []).append(r)
    chosen: dict[PairKey, FoundRun] = {}
    ignored: list[tuple[str, FoundRun, FoundRun]] = []
    for key, group in groups.items():
        ordered = sorted(group, key=lambda r: r.newness, reverse=True)
        chosen[key] = ordered[0]
        ignored += [(side, r, ordered[0]) for r in ordered[1:]]
    return chosen, ignored


def compare_dirs(baseline: Path, run: Path, tolerances: Tolerances | None = None) -> DirComparison:
    """Pair the runs of two reports directories (or run directories: a directory of one run) by PairKey and
    compare each pair with ``compare_runs``.

    Raises UsageError when a side holds no run, a summary cannot be read, no run has a partner, or a pair does not
    compare (other summary schema): CI must not read "nothing compared" as "no regression".
    """
    base_runs, base_skipped = find_runs(baseline)
    run_runs, run_skipped = find_runs(run)
    base_by_key, base_ignored = _newest_by_key(base_runs, "baseline")
    run_by_key, run_ignored = _newest_by_key(run_runs, "run")
    shared = sorted(set(base_by_key) & set(run_by_key), key=lambda k: k.text)
    if not shared:
        base_keys, run_keys = (
            "; ".join(sorted(k.text for k in base_by_key)),
            "; ".join(sorted(k.text for k in run_by_key)),
        )
        raise UsageError(
            f"nothing to compare: no run in {run} ({len(run_runs)}) ran what a run in {baseline} ({len(base_runs)}) "
            "ran (same topology, backend, kube-proxy mode, client addresses and case); the baseline ran "
            f"{base_keys}; the run ran {run_keys}"
        )
    pairs = []
    for key in shared:
        b, r = base_by_key[key], run_by_key[key]
        try:
            comparison = compare_runs(b.summary, r.summary, tolerances=tolerances)
        except UsageError as exc:
            raise UsageError(f"{b.path} and {r.path} ({key.text}) do not compare: {exc}") from exc
        pairs.append(Pair(key, b, r, comparison))
    return DirComparison(
        baseline_dir=baseline,
        run_dir=run,
        pairs=pairs,
        only_in_baseline=sorted((base_by_key[k] for k in set(base_by_key) - set(run_by_key)), key=lambda r: r.key.text),
        only_in_run=sorted((run_by_key[k] for k in set(run_by_key) - set(base_by_key)), key=lambda r: r.key.text),
        ignored=base_ignored + run_ignored,
        skipped=base_skipped + run_skipped,
    )
