"""Balance: is the load spread over the pods, or does stickiness pin everyone to a few of them?

Stickiness is easy to get by sending everybody to one pod; the seed recipe does nearly that (at most one app
pod per nginx pod gets traffic), and `ip_hash` piles every client of a /24 onto one pod. So sessions are
counted per pod, by the pod that answered the handshake, over every pod that was ready during the measured
window, and judged three ways: no pod got nothing (unless idle pods are allowed), the busiest pod is not far
above the mean (max/mean), and the spread as a whole is even (Jain's fairness index, (Σx)² / (n·Σx²): 1 when
even, 1/n when one pod takes everything).

A sticky strategy places clients, not sessions: with 20 clients on 3 pods, a hash that spreads clients
perfectly at random still puts 10 of them on one pod about one run in ten. So an unevenness beyond the
thresholds is held against the topology only when chance is an unlikely explanation for it: each client gives
one vote, split over pods as its sessions were, and a chi-square test of those votes against an even spread
asks how often random placement of that many clients is at least this uneven. At or above
``Thresholds.balance_chance`` (1%) the check passes and says the unevenness is what chance gives; a pod that
got nothing or a pile-up of many clients on one pod is far below it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.checks.base import MAX_EXAMPLES, NO_POD_IDENTITY, CheckResult, Thresholds, no_pod_identity
from harness.client.records import SessionRecord
from harness.stats import chi_square_sf

__all__ = ["chance_of_unevenness", "check_balance", "jain_index", "sessions_per_pod"]

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


def chance_of_unevenness(sessions: Sequence[SessionRecord], pods: Sequence[str]) -> tuple[int, float]:
    """The clients judged and how often placing them on ``pods`` at random is at least as uneven as they are.

    Each client has one vote, split over the pods as its sessions were; the votes per pod are compared with an
    even spread by a chi-square test (k - 1 degrees of freedom for k pods).
    """
    judged = set(pods)
    per_client: dict[str, Counter[str]] = {}
    for r in sessions:
        if r.pod in judged:
            per_client.setdefault(r.client, Counter())[r.pod] += 1
    if len(judged) < 2 or not per_client:
        return len(per_client), 1.0
    votes = dict.fromkeys(judged, 0.0)
    for served in per_client.values():
        total = sum(served.values())
        for pod, n in served.items():
            votes[pod] += n / total
    expected = len(per_client) / len(judged)
    statistic = sum((v - expected) ** 2 / expected for v in votes.values())
    return len(per_client), chi_square_sf(statistic, len(judged) - 1)


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
    clients, chance = chance_of_unevenness(sessions, list(judged))
    figures.update(clients=clients, chance=chance, balance_chance=th.balance_chance)
    if faults and th.balance_chance and chance >= th.balance_chance:
        reason = (
            f"uneven as chance makes it: {'; '.join(faults)} ({over}), but {clients} clients placed at random are "
            f"at least this uneven {chance:.0%} of the time (held against the topology below {th.balance_chance:.0%})"
        )
        note = f"more clients judge balance more sharply: {clients} clients leave it to chance"
        return CheckResult(NAME, "pass", reason, figures, notes=[note])
    if faults:
        chance_text = f"{clients} clients at random: {chance:.2g} chance" if clients else "no client"
        reason = f"unbalanced: {'; '.join(faults)} ({over}; {chance_text})"
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
