"""Checks: pure functions from session records to verdicts, so that a run can be judged again later.

Each check returns a `CheckResult` (verdict, one sentence why, the figures, a few offending examples);
`evaluate` runs them all and `compare` sets them against a topology's expected verdict.
"""

from __future__ import annotations

from harness.checks.affinity import ClientHistory, check_affinity, client_histories
from harness.checks.balance import check_balance, jain_index, sessions_per_pod
from harness.checks.base import VERDICTS, CheckResult, Thresholds, Verdict
from harness.checks.continuity import check_continuity, is_transport_error, violation_category
from harness.checks.verdict import CHECKS, Comparison, Outcome, coincidence_note, compare, converged_pod, evaluate

__all__ = [
    "CHECKS",
    "VERDICTS",
    "CheckResult",
    "ClientHistory",
    "Comparison",
    "Outcome",
    "Thresholds",
    "Verdict",
    "check_affinity",
    "check_balance",
    "check_continuity",
    "client_histories",
    "coincidence_note",
    "compare",
    "converged_pod",
    "evaluate",
    "is_transport_error",
    "jain_index",
    "sessions_per_pod",
    "violation_category",
]
