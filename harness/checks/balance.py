"""Balance: is the load spread over the pods, or does stickiness pin everyone to a few of them?

Stickiness is easy to get by sending everybody to one pod; the seed recipe does nearly that (at most one app
pod per nginx pod gets traffic), and `ip_hash` piles every client of a /24 onto one pod. So sessions are
counted per pod, by the pod that answered the handshake, over every pod that was ready during the measured
window, and judged three ways: no pod got nothing (unless idle pods are allowed), the busiest pod is not far
above the mean (max/mean), and the spread as a whole is even (Jain's fairness index, (Σx)² / (n·Σx²): 1 when
even, 1/n when one pod takes everything).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.checks.base import MAX_EXAMPLES, NO_POD_IDENTITY, CheckResult, Thresholds, no_pod_identity
from harness.client.records import SessionRecord

__all__ = ["check_balance", "jain_index", "sessions_per_pod"]

NAME = "balance"


def sessions_per_pod(sessions: Sequence[SessionRecord], pods: Sequence[str]) -> dict[str, int]:
    """Sessions per handshake pod: the listed pods in order (zeros included), then unlisted ones, sorted."""
    served = Counter(r.pod for r in sessions if r.pod is not None)
    counts = {pod: served.get(pod, 0) for pod in dict.fromkeys(pods)}
    for pod in sorted(set(served) - set(counts)):
        counts[pod] = served[pod]
    return counts


def jain_index(values: Sequence[int]) -> float:
    """Jain's fairness index of the values; 1.0 for no values or all zeros (nothing is unfair)."""
    square_sum = sum(v * v for v in values)
    if not values or square_sum == 0:
        return 1.0
    return float(sum(values) ** 2 / (len(values) * square_sum))


def check_balance(sessions: Sequence[SessionRecord], pods: Sequence[str], th: Thresholds) -> CheckResult:
    """Judge the spread of sessions over ``pods`` (all pods ready during the measured window)."""
    counts = sessions_per_pod(sessions, pods)
    total = sum(counts.values())
    idle = [pod for pod, n in counts.items() if n == 0]
    # with idle pods allowed, evenness is judged over the pods that took part
    judged = {pod: n for pod, n in counts.items() if n or not th.allow_idle_pods}
    mean = total / len(judged) if judged else 0.0
    busiest = max(judged, key=lambda pod: judged[pod], default=None)
    ratio = judged[busiest] / mean if busiest is not None and mean else 1.0
    jain = jain_index(list(judged.values()))
    figures: dict[str, Any] = {
        "sessions": total,
        "pods": len(counts),
        "per_pod": counts,
        "unlisted_pods": [pod for pod in counts if pod not in set(pods)],
        "idle_pods": idle,
        "judged_pods": len(judged),
        "mean": mean,
        "max": judged[busiest] if busiest is not None else 0,
        "max_mean_ratio": ratio,
        "jain": jain,
        "min_jain": th.min_jain,
        "max_ratio": th.max_ratio,
        "allow_idle_pods": th.allow_idle_pods,
    }

    if no_pod_identity(sessions):
        return CheckResult(NAME, "n/a", NO_POD_IDENTITY, figures)
    if total < th.min_balance_sessions:
        reason = (
            f"only {total} sessions reached a pod, fewer than the {th.min_balance_sessions} needed to judge balance"
        )
        return CheckResult(NAME, "n/a", reason, figures)

    faults = []
    if idle and not th.allow_idle_pods:
        faults.append(f"{len(idle)} idle pod{'s' if len(idle) > 1 else ''} ({', '.join(idle[:MAX_EXAMPLES])})")
    if ratio > th.max_ratio:
        faults.append(f"max/mean {ratio:.2f} > {th.max_ratio:g}")
    if jain < th.min_jain:
        faults.append(f"Jain {jain:.2f} < {th.min_jain:g}")
    over = f"{total} sessions over {len(judged)} pods"
    if faults:
        reason = f"unbalanced: {'; '.join(faults)} ({over})"
    else:
        idle_text = f"{len(idle)} idle pods allowed" if idle else "no idle pod"
        reason = f"{over}: max/mean {ratio:.2f} ≤ {th.max_ratio:g}, Jain {jain:.2f} ≥ {th.min_jain:g}, {idle_text}"
    examples = []
    if busiest is not None and (ratio > th.max_ratio or jain < th.min_jain):
        quietest = min(judged, key=lambda pod: judged[pod])
        for pod in dict.fromkeys((busiest, quietest)):
            if judged[pod]:
                examples.append(f"pod {pod} got {judged[pod]} of {total} sessions ({judged[pod] / mean:.2f}x the mean)")
    if not th.allow_idle_pods:
        examples += [f"pod {pod} got 0 of {total} sessions" for pod in idle]
    return CheckResult(NAME, "fail" if faults else "pass", reason, figures, examples[:MAX_EXAMPLES])
