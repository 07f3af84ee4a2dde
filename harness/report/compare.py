"""Compare two runs of one topology: what got worse, what got better, and whether that is a regression.

A nightly run is read against a baseline run, and CI needs one answer: did this change make stickiness,
balance or latency worse? Only the summaries are compared, so a baseline can be an old ``summary.json`` kept
as an artefact. Noise must not fail a build, so every numeric rule has a tolerance: latency must rise by more
than a relative threshold *and* an absolute floor, rates by more than a few points. A check that stops meeting
its expectation is always a regression; so is one that disappeared. Changes that are worse but do not decide
the exit code (other latencies, events) are listed as such.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.report.junit import check_matches

__all__ = ["Change", "RunComparison", "Tolerances", "compare_runs", "load_summary"]


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
        raise UsageError(f"{path} is not valid JSON ({exc}): rebuild it with `harness report {source.parent}`") from exc
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
