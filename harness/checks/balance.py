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
one vote, split over pods as its sessions were, and the votes ask how often random placement of that many
clients is at least this uneven, "uneven" measured by the chi-square statistic of the votes against an even
spread (for a given number of clients and pods, the same order as the sum of squared votes). At or above
``Thresholds.balance_chance`` (1%) the check passes and says the unevenness is what chance gives; a pod that
got nothing or a pile-up of many clients on one pod is far below it.

The chi-square distribution only approximates that chance, and roughly below about 5 clients per pod, where
a run has few clients and the answer matters most. So the chance is counted exactly, over every shape a
placement can take, whenever there are few enough shapes (``EXACT_SHAPES``: up to about 1,000 clients on 3
pods, or 50 on 10); where there are too many and fewer than 5 clients per pod it is estimated from 20,000
random placements, seeded from the numbers of clients and pods so that a run is judged the same way every
time; the chi-square approximation is kept only for many clients on many pods. Split votes are not rounded:
a placement at random puts each client on one pod, and it counts as at least as uneven when its sum of
squared counts reaches the observed sum of squared votes (ties included). ``figures["chance_method"]`` and
the reason say which way the chance was found.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

from harness.checks.base import MAX_EXAMPLES, NO_POD_IDENTITY, CheckResult, Thresholds
from harness.client.records import SessionRecord
from harness.stats import (
    MONTE_CARLO_DRAWS,
    chi_square_sf,
    multinomial_sf,
    multinomial_sf_monte_carlo,
    placement_shapes,
)

__all__ = [
    "EXACT_SHAPES",
    "FEW_PER_POD",
    "BalanceTally",
    "Chance",
    "ChanceMethod",
    "chance_of_unevenness",
    "check_balance",
    "jain_index",
    "placement_chance",
    "sessions_per_pod",
]

NAME = "balance"

# placement shapes (partitions of the clients into at most one part per pod) summed exactly at most: about
# 0.2 s at worst; 1,000 clients on 3 pods have 83,834 shapes, 49 on 10 pods 55,494
EXACT_SHAPES = 100_000
# below this many clients per pod the chi-square approximation is rough: Monte-Carlo where exact is too costly
FEW_PER_POD = 5

ChanceMethod = Literal["exact", "monte-carlo", "chi-square"]

_METHOD_TEXT: dict[ChanceMethod, str] = {
    "exact": "counted exactly over every placement",
    "monte-carlo": f"estimated from {MONTE_CARLO_DRAWS:,} seeded random placements",
    "chi-square": "by the chi-square approximation",
}


class Chance(NamedTuple):
    """The clients judged, how often random placement is at least as uneven as they are, and how it was found."""

    clients: int
    chance: float
    method: ChanceMethod


class BalanceTally:
    """What the balance check needs of each record, folded as the records stream by: sessions per handshake pod,
    and per client how its sessions split over pods (a client's vote)."""

    def __init__(self) -> None:
        self.sessions = 0
        self.served: Counter[str] = Counter()
        self.per_client: dict[str, Counter[str]] = {}

    def add(self, record: SessionRecord) -> None:
        self.sessions += 1
        pod = record.pod
        if pod is not None:
            self.served[pod] += 1
            self.per_client.setdefault(record.client, Counter())[pod] += 1

    def per_pod(self, pods: Sequence[str]) -> dict[str, int]:
        """Sessions per handshake pod: the listed pods in order (zeros included), then unlisted ones, sorted."""
        served = self.served
        counts = {pod: served.get(pod, 0) for pod in dict.fromkeys(pods)}
        for pod in sorted(set(served) - set(counts)):
            counts[pod] = served[pod]
        return counts

    def chance(self, pods: Sequence[str]) -> Chance:
        """The clients judged and how often placing them on ``pods`` at random is at least as uneven as they are.

        Each client has one vote, split over the pods as its sessions were; ``placement_chance`` judges the votes.
        """
        judged = set(pods)
        per_client = [
            c for c in ({p: n for p, n in served.items() if p in judged} for served in self.per_client.values()) if c
        ]
        if len(judged) < 2 or not per_client:
            return Chance(len(per_client), 1.0, "exact")  # every placement is as uneven as any other
        votes = dict.fromkeys(judged, 0.0)
        for served in per_client:
            total = sum(served.values())
            for pod, n in served.items():
                votes[pod] += n / total
        return Chance(len(per_client), *placement_chance(list(votes.values()), len(per_client)))

    def result(self, pods: Sequence[str], th: Thresholds) -> CheckResult:
        """Judge the spread of sessions over ``pods`` (all pods ready during the measured window)."""
        return _judge(self, pods, th)


def _tally(sessions: Iterable[SessionRecord]) -> BalanceTally:
    tally = BalanceTally()
    for record in sessions:
        tally.add(record)
    return tally


def sessions_per_pod(sessions: Iterable[SessionRecord], pods: Sequence[str]) -> dict[str, int]:
    """Sessions per handshake pod: the listed pods in order (zeros included), then unlisted ones, sorted."""
    return _tally(sessions).per_pod(pods)


def jain_index(values: Sequence[int]) -> float:
    """Jain's fairness index of the values; 1.0 for no values or all zeros (nothing is unfair)."""
    square_sum = sum(v * v for v in values)
    if not values or square_sum == 0:
        return 1.0
    return float(sum(values) ** 2 / (len(values) * square_sum))


def chance_of_unevenness(sessions: Iterable[SessionRecord], pods: Sequence[str]) -> Chance:
    """The clients judged and how often placing them on ``pods`` at random is at least as uneven as they are."""
    return _tally(sessions).chance(pods)


def placement_chance(votes: Sequence[float], clients: int) -> tuple[float, ChanceMethod]:
    """How often ``clients`` placed on ``len(votes)`` pods at random are at least as uneven as ``votes``, and how.

    Exact while there are at most ``EXACT_SHAPES`` shapes of placement; else seeded Monte-Carlo below
    ``FEW_PER_POD`` clients per pod, and the chi-square approximation (k - 1 degrees of freedom) above.
    """
    k = len(votes)
    square_sum = sum(v * v for v in votes)
    if _exact_is_cheap(clients, k):
        return multinomial_sf(square_sum, clients, k), "exact"
    if clients < FEW_PER_POD * k:
        return multinomial_sf_monte_carlo(square_sum, clients, k), "monte-carlo"
    expected = clients / k
    statistic = sum((v - expected) ** 2 / expected for v in votes)
    return chi_square_sf(statistic, k - 1), "chi-square"


def _exact_is_cheap(clients: int, k: int) -> bool:
    # a shape with k nonzero counts is at most k! compositions: a quick lower bound spares counting the shapes
    if clients >= k and math.comb(clients - 1, k - 1) > EXACT_SHAPES * math.factorial(k):
        return False
    return placement_shapes(clients, k) <= EXACT_SHAPES


def check_balance(sessions: Iterable[SessionRecord], pods: Sequence[str], th: Thresholds) -> CheckResult:
    """Judge the spread of sessions over ``pods`` (all pods ready during the measured window)."""
    return _tally(sessions).result(pods, th)


def _judge(tally: BalanceTally, pods: Sequence[str], th: Thresholds) -> CheckResult:
    counts = tally.per_pod(pods)
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

    if tally.sessions and not tally.served:
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
    clients, chance, method = tally.chance(list(judged))
    figures.update(clients=clients, chance=chance, chance_method=method, balance_chance=th.balance_chance)
    if faults and th.balance_chance and chance >= th.balance_chance:
        reason = (
            f"uneven as chance makes it: {'; '.join(faults)} ({over}), but {clients} clients placed at random are "
            f"at least this uneven {chance:.0%} of the time ({_METHOD_TEXT[method]}; held against the topology below "
            f"{th.balance_chance:.0%})"
        )
        note = f"more clients judge balance more sharply: {clients} clients leave it to chance"
        return CheckResult(NAME, "pass", reason, figures, notes=[note])
    if faults:
        chance_text = f"{clients} clients at random: {chance:.2g} chance, {method}" if clients else "no client"
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
