"""The run's verdict: every check on the same records, compared with what the topology says should happen.

A topology carries its expected verdict (the seed recipe is expected to fail continuity; nginx-hash to pass),
so a run is "as expected" or not, and that, not pass/fail, is what CI and the exit code report. An expectation
of "n/a" (or none at all) asserts nothing; a check that could not judge ("n/a") meets only such an
expectation, so that a run too short to judge cannot pass for a run that judged.

A pass can also rest on luck (DESIGN, "Luck"): kube-proxy's first choice on each node is random and then
sticks, so with few nodes and pods every chain can happen to end on one pod and the seed recipe seems to work.
When continuity passes although every session was served by a single pod out of several, the verdict says so.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.checks.affinity import AffinityTally
from harness.checks.balance import BalanceTally
from harness.checks.base import VERDICTS, CheckResult, Thresholds, Verdict
from harness.checks.continuity import ContinuityTally
from harness.client.records import SessionRecord
from harness.errors import UsageError

__all__ = ["CHECKS", "Comparison", "Outcome", "Tally", "coincidence_note", "compare", "converged_pod", "evaluate"]

CHECKS = ("continuity", "affinity", "balance")  # the order in which checks are run and shown


class Tally:
    """Every check's figures, folded one record at a time: a run is judged as its records stream by, holding
    per-client and per-pod figures (and, for affinity's order, 11 bytes a session), never the records."""

    def __init__(self) -> None:
        self.continuity = ContinuityTally()
        self.affinity = AffinityTally()
        self.balance = BalanceTally()
        self._served: set[str] = set()
        self._reached = 0

    def add(self, record: SessionRecord) -> None:
        self.continuity.add(record)
        self.affinity.add(record)
        self.balance.add(record)
        if record.pods:
            self._reached += 1
            self._served.update(record.pods)

    @property
    def sessions(self) -> int:
        return self.continuity.sessions

    @property
    def clients(self) -> int:
        return len(self.affinity.clients)

    def converged(self, pods: Sequence[str]) -> str | None:
        """The pod that served every session that reached a pod, when there were several pods; else None."""
        served = self._served
        if len(served) != 1 or len(served | set(pods)) < 2 or self._reached < 2:
            return None
        return next(iter(served))

    def results(
        self,
        pods: Sequence[str],
        th: Thresholds,
        removed_pods: Collection[str] = (),
        added_pods: Collection[str] = (),
    ) -> dict[str, CheckResult]:
        """Every check, in the order they are shown; a lucky continuity pass carries the coincidence note."""
        continuity = self.continuity.result(th)
        note = _coincidence(self.converged(pods), pods) if continuity.verdict == "pass" else None
        if note:
            continuity = replace(continuity, notes=[*continuity.notes, note])
        return {
            "continuity": continuity,
            "affinity": self.affinity.result(th, removed_pods, added_pods),
            "balance": self.balance.result(pods, th),
        }


def _tally(sessions: Iterable[SessionRecord]) -> Tally:
    tally = Tally()
    for record in sessions:
        tally.add(record)
    return tally


def converged_pod(sessions: Iterable[SessionRecord], pods: Sequence[str]) -> str | None:
    """The pod that served every session that reached a pod, when there were several pods; else None."""
    return _tally(sessions).converged(pods)


def _coincidence(pod: str | None, pods: Sequence[str]) -> str | None:
    if pod is None:
        return None
    return (
        f"every session was served by {pod} of {len(set(pods) | {pod})} pods: a pass that rests on all chains "
        "converging on one pod; re-run with other seeds"
    )


def coincidence_note(sessions: Iterable[SessionRecord], pods: Sequence[str]) -> str | None:
    """A warning when every session that reached a pod was served by one and the same pod of several."""
    return _coincidence(converged_pod(sessions, pods), pods)


def evaluate(
    sessions: Iterable[SessionRecord],
    pods: Sequence[str],
    th: Thresholds,
    removed_pods: Collection[str] = (),
    added_pods: Collection[str] = (),
) -> dict[str, CheckResult]:
    """Run every check, in the order they are shown; a lucky continuity pass carries the coincidence note."""
    return _tally(sessions).results(pods, th, removed_pods, added_pods)


@dataclass(frozen=True)
class Comparison:
    """One check's measured verdict against the expected one."""

    name: str
    measured: Verdict
    expected: Verdict | None  # None: the topology says nothing about this check
    reason: str

    @property
    def asserted(self) -> bool:
        return self.expected is not None and self.expected != "n/a"

    @property
    def matches(self) -> bool:
        return not self.asserted or self.measured == self.expected

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.measured,
            "expected": self.expected,
            "matches": self.matches,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Outcome:
    """Every check compared with its expectation; ``ok`` when all match."""

    checks: dict[str, Comparison]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.matches for c in self.checks.values())

    @property
    def mismatches(self) -> list[Comparison]:
        return [c for c in self.checks.values() if not c.matches]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": {name: c.to_json() for name, c in self.checks.items()},
            "notes": list(self.notes),
        }

    def render_text(self) -> str:
        """A compact table for a terminal, then the notes, then one line: as expected or not."""
        rows = [("check", "measured", "expected", "match", "reason")]
        for c in self.checks.values():
            match = ("yes" if c.matches else "NO") if c.asserted else "-"
            rows.append((c.name, c.measured, c.expected or "-", match, c.reason))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[4]]) for row in rows]
        lines += [f"note: {note}" for note in self.notes]
        if self.ok:
            lines.append("as expected")
        else:
            wrong = ", ".join(f"{c.name} {c.measured} (expected {c.expected})" for c in self.mismatches)
            lines.append(f"NOT as expected: {wrong}")
        return "\n".join(lines)


def compare(measured: Mapping[str, CheckResult], expected: Mapping[str, str]) -> Outcome:
    """Compare measured results with expected verdicts ("pass", "fail" or "n/a" per check name).

    A check that was expected but not measured counts as measured "n/a", so an assertion about it fails.
    """
    for name, verdict in expected.items():
        if verdict not in VERDICTS:
            raise UsageError(f"expected verdict for {name!r} is {verdict!r}; use one of {', '.join(VERDICTS)}")
    checks: dict[str, Comparison] = {}
    for name, result in measured.items():
        checks[name] = Comparison(name, result.verdict, _verdict(expected.get(name)), result.reason)
    for name, verdict in expected.items():
        if name not in checks:
            checks[name] = Comparison(name, "n/a", _verdict(verdict), "not measured in this run")
    notes = [note for result in measured.values() for note in result.notes]
    return Outcome(checks, notes)


def _verdict(value: str | None) -> Verdict | None:
    if value == "pass":
        return "pass"
    if value == "fail":
        return "fail"
    if value == "n/a":
        return "n/a"
    return None
