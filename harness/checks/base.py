"""What every check shares: a verdict, the thresholds it is judged against, and the result it returns.

A result carries one sentence for people (why it passed or failed, with the number that decided it), the
figures behind that sentence for machines (reports, JUnit, dashboards), and a few concrete offending items,
because "3% of sessions broke" is believed only once someone sees "client c17 session sid=abc: served by 2
pods".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from harness.client.records import SessionRecord
from harness.errors import UsageError

__all__ = [
    "MAX_EXAMPLES",
    "VERDICTS",
    "CheckResult",
    "Thresholds",
    "Verdict",
    "pct",
    "rate",
    "session_label",
]

Verdict = Literal["pass", "fail", "n/a"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

MAX_EXAMPLES = 5  # offending items shown per check: enough to see a pattern, few enough to read


@dataclass(frozen=True)
class Thresholds:
    """What each check tolerates. The defaults are strict: a sticky setup should not lose a single session."""

    # continuity: fraction of judged sessions allowed to break continuity
    max_violation_rate: float = 0.0
    # affinity: a client is judged only with at least this many sessions that reached a pod (Kubernetes' e2e
    # test calls ClientIP affinity held after 15 identical answers)
    affinity_run: int = 15
    # ... and with long sessions (a few per client in a run), at least this many: a client kept on one pod over
    # k sessions by chance, on P pods, happens with probability P**-(k-1), and every judged client counts
    affinity_run_long: int = 3
    # short sessions with no client reaching affinity_run (many clients, a short run): judged at affinity_run_long
    # when at least this many clients have that many; chance keeps each of 30 clients on one of P >= 2 pods over
    # 3 sessions with probability at most 2**-60
    affinity_fallback_clients: int = 30
    min_affinity_clients: int = 1  # fewer judged clients: n/a
    max_affinity_broken_rate: float = 0.0  # fraction of judged clients allowed to move between pods
    # balance: sessions per pod, by the pod that answered the handshake
    min_jain: float = 0.8
    max_ratio: float = 1.5  # busiest pod's sessions / mean sessions per pod
    allow_idle_pods: bool = False
    min_balance_sessions: int = 20  # fewer sessions: n/a
    # balance: an unevenness that placing the same clients on pods at random reaches at least this often is put
    # down to chance, not to the topology (0: never)
    balance_chance: float = 0.01

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_violation_rate", "max_affinity_broken_rate", "balance_chance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be a fraction between 0 and 1, not {getattr(self, name)}")
        if self.affinity_run < 2:
            problems.append(f"affinity_run must be at least 2 sessions, not {self.affinity_run}")
        if self.affinity_run_long < 2:
            problems.append(f"affinity_run_long must be at least 2 sessions, not {self.affinity_run_long}")
        if self.min_affinity_clients < 1:
            problems.append(f"min_affinity_clients must be at least 1, not {self.min_affinity_clients}")
        if not 0.0 < self.min_jain <= 1.0:
            problems.append(f"min_jain must be in (0, 1] (1 is perfectly even), not {self.min_jain}")
        if self.max_ratio < 1.0:
            problems.append(f"max_ratio must be at least 1 (max/mean cannot be below 1), not {self.max_ratio}")
        if self.min_balance_sessions < 1:
            problems.append(f"min_balance_sessions must be at least 1, not {self.min_balance_sessions}")
        if problems:
            raise UsageError("invalid thresholds: " + "; ".join(problems))


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    verdict: Verdict
    reason: str  # one sentence: why it passed or failed, with the key number
    figures: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable numbers behind the reason
    examples: list[str] = field(default_factory=list)  # up to MAX_EXAMPLES concrete offending items
    notes: list[str] = field(default_factory=list)  # caveats on the verdict (e.g. a pass that rests on luck)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason": self.reason,
            "figures": self.figures,
            "examples": list(self.examples),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckResult:
        verdict = data["verdict"]
        if verdict not in VERDICTS:
            raise UsageError(f"check {data.get('name')!r}: verdict {verdict!r} is not one of {VERDICTS}")
        return cls(
            name=data["name"],
            verdict=verdict,
            reason=data["reason"],
            figures=dict(data.get("figures", {})),
            examples=list(data.get("examples", [])),
            notes=list(data.get("notes", [])),
        )


def rate(part: int, whole: int) -> float:
    """part / whole, 0 for an empty whole."""
    return part / whole if whole else 0.0


def pct(fraction: float) -> str:
    """A fraction as a short percentage that does not round a small non-zero rate down to 0%."""
    return f"{fraction * 100:.3g}%"


def session_label(record: SessionRecord) -> str:
    """How an offending session is named in examples: enough to find it in the records."""
    return f"client {record.client} session sid={record.sid or '?'}"


NO_POD_IDENTITY = (
    "no pod identity: no answer named its pod (the app sends no x-pod header and no proxy tier named the upstream), "
    "so only continuity can be judged, from the wrong-pod answers"
)


def no_pod_identity(sessions: Sequence[SessionRecord]) -> bool:
    """True when sessions exist but not one answer of them named a pod."""
    return bool(sessions) and not any(s.pods for s in sessions)
