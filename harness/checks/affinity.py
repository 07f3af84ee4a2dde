"""Per-client affinity: do a client's successive sessions land on the same pod?

Continuity is about one session; affinity is about a client over time. A chain can keep every session on one
pod and still send each new session of the same client somewhere else (a random NodePort choice per
connection, a cookie that is not kept): state a client keeps on "its" pod is then lost at every reconnect.

Kubernetes' own e2e test calls ClientIP affinity held after 15 identical answers in a row. We do at least as
well: a client is judged only when it has at least ``affinity_run`` sessions that reached a pod (with long
sessions, which give a client only a few in a run, ``affinity_run_long``: one client then says less, but every
judged client must hold, and a non-sticky chain keeps a client with k sessions on one of P pods only with
probability P**-(k-1); the negative controls are shown to fail so; and in a short run of many clients where none
reaches ``affinity_run``, the clients with ``affinity_run_long`` when there are ``affinity_fallback_clients`` of
them), and then
*every* move between its consecutive sessions counts, not only the last 15. A move away from a pod that went
away is not held against the client: the session before the move was disrupted by a scaling event, or the pod
is one of the pods removed during the run. Nor is a move onto a pod added during the run: new pods can only take
their share by taking clients from the others (consistent hashing moves about 1/N of them on a scale-up; how many
moved against that minimum is the scaling report's to say). A move back off such a pod still counts.
"""

from __future__ import annotations

import statistics
from array import array
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from harness.checks.base import (
    MAX_EXAMPLES,
    NO_POD_IDENTITY,
    CheckResult,
    Thresholds,
    Verdict,
    pct,
    rate,
)
from harness.client.records import SessionRecord

__all__ = ["AffinityTally", "ClientHistory", "check_affinity", "client_histories"]

NAME = "affinity"


@dataclass(frozen=True)
class ClientHistory:
    """The handshake pods of one client's sessions, in start order, and which moves between them count."""

    client: str
    pods: tuple[str, ...]  # the handshake pod of each session that reached a pod, in start order
    moves: tuple[tuple[int, str, str], ...]  # unexcused moves: (index of the session moved to, from, to)
    excused: int  # moves away from a pod that went away
    onto_added: int = 0  # moves onto a pod added during the run

    @property
    def held(self) -> bool:
        return not self.moves

    def describe(self) -> str:
        counts = Counter(self.pods)
        spread = ", ".join(f"{pod} x{n}" for pod, n in counts.most_common())
        index, old, new = self.moves[0]
        return (
            f"client {self.client}: {len(self.pods)} sessions on {len(counts)} pods ({spread}); "
            f"{len(self.moves)} unexcused moves, first at session {index + 1}: {old} → {new}"
        )


class AffinityTally:
    """What the affinity check needs of each record, folded as the records stream by: per client, the start time,
    handshake pod and disruption of each session that reached a pod, in compact arrays (11 bytes a session)."""

    def __init__(self) -> None:
        self.sessions = 0
        self.clients: set[str] = set()
        self._pod_ids: dict[str, int] = {}
        self._pods: list[str] = []
        self._by_client: dict[str, tuple[array[float], array[int], bytearray]] = {}

    def add(self, record: SessionRecord) -> None:
        self.sessions += 1
        self.clients.add(record.client)
        pod = record.pod
        if pod is None:
            return
        pod_id = self._pod_ids.get(pod)
        if pod_id is None:
            pod_id = self._pod_ids[pod] = len(self._pods)
            self._pods.append(pod)
        row = self._by_client.get(record.client)
        if row is None:
            row = self._by_client[record.client] = (array("d"), array("H"), bytearray())
        row[0].append(record.started)
        row[1].append(pod_id)
        row[2].append(record.disrupted_by is not None)

    @property
    def any_pod(self) -> bool:
        return bool(self._pods)

    def histories(
        self, removed_pods: Collection[str] = (), added_pods: Collection[str] = ()
    ) -> dict[str, ClientHistory]:
        """Every client that had at least one session reaching a pod, with its moves sorted out."""
        removed, added = frozenset(removed_pods), frozenset(added_pods)
        names = self._pods
        histories = {}
        for client, (starts, pod_ids, disrupted) in self._by_client.items():
            order = sorted(range(len(starts)), key=starts.__getitem__)  # stable: ties keep arrival order
            pods = tuple(names[pod_ids[i]] for i in order)
            moves = []
            excused = onto_added = 0
            for index, (before, after) in enumerate(pairwise(order), start=1):
                old, new = names[pod_ids[before]], names[pod_ids[after]]
                if old == new:
                    continue
                if disrupted[before] or old in removed:
                    excused += 1
                elif new in added:
                    onto_added += 1
                else:
                    moves.append((index, old, new))
            histories[client] = ClientHistory(client, pods, tuple(moves), excused, onto_added)
        return histories

    def result(
        self, th: Thresholds, removed_pods: Collection[str] = (), added_pods: Collection[str] = ()
    ) -> CheckResult:
        """Judge each client with at least ``th.affinity_run`` sessions that reached a pod."""
        return _judge(self, th, removed_pods, added_pods)


def client_histories(
    sessions: Iterable[SessionRecord], removed_pods: Collection[str] = (), added_pods: Collection[str] = ()
) -> dict[str, ClientHistory]:
    """Every client that had at least one session reaching a pod, with its moves sorted out."""
    tally = AffinityTally()
    for record in sessions:
        tally.add(record)
    return tally.histories(removed_pods, added_pods)


def check_affinity(
    sessions: Iterable[SessionRecord],
    th: Thresholds,
    removed_pods: Collection[str] = (),
    added_pods: Collection[str] = (),
) -> CheckResult:
    """Judge each client with at least ``th.affinity_run`` sessions that reached a pod."""
    tally = AffinityTally()
    for record in sessions:
        tally.add(record)
    return tally.result(th, removed_pods, added_pods)


def _judge(
    tally: AffinityTally, th: Thresholds, removed_pods: Collection[str], added_pods: Collection[str]
) -> CheckResult:
    histories = tally.histories(removed_pods, added_pods)
    lengths = [len(h.pods) for h in histories.values()]
    run = th.affinity_run
    judged = [h for h in histories.values() if len(h.pods) >= run]
    reached = len(judged)
    fallback = False
    if reached < th.min_affinity_clients and th.affinity_run_long < run:
        many = [h for h in histories.values() if len(h.pods) >= th.affinity_run_long]
        if len(many) >= max(th.affinity_fallback_clients, th.min_affinity_clients):
            judged, run, fallback = many, th.affinity_run_long, True
    broken = [h for h in judged if not h.held]
    broken_rate = rate(len(broken), len(judged))
    spread = Counter(len(set(h.pods)) for h in broken)
    figures: dict[str, Any] = {
        "clients": len(tally.clients),
        "clients_with_pod": len(histories),
        "affinity_run": run,
        "fallback": fallback,
        "judged": len(judged),
        "held": len(judged) - len(broken),
        "broken": len(broken),
        "broken_rate": broken_rate,
        "max_affinity_broken_rate": th.max_affinity_broken_rate,
        "broken_by_distinct_pods": {str(k): spread[k] for k in sorted(spread)},
        "moves": sum(len(h.moves) for h in judged),
        # too short to judge, but already moved: a hint when the verdict is n/a
        "unjudged_clients_that_moved": sum(1 for h in histories.values() if h.moves and len(h.pods) < run),
        "excused_moves": sum(h.excused for h in judged),
        "moves_onto_added_pods": sum(h.onto_added for h in judged),
        "sessions_per_client": {
            "min": min(lengths, default=0),
            "median": statistics.median(lengths) if lengths else 0,
            "max": max(lengths, default=0),
        },
    }

    if tally.sessions and not tally.any_pod:
        return CheckResult(NAME, "n/a", NO_POD_IDENTITY, figures)
    if len(judged) < th.min_affinity_clients:
        most = max(lengths, default=0)
        if not judged:
            who = f"no client had {th.affinity_run} sessions that reached a pod"
        else:
            who = f"only {len(judged)} clients had {th.affinity_run} sessions that reached a pod"
        reason = (
            f"{who} (the most any client had was {most}; {th.min_affinity_clients} judged clients needed): "
            "run longer or reconnect more often"
        )
        return CheckResult(NAME, "n/a", reason, figures)

    not_counted = []
    if figures["excused_moves"]:
        not_counted.append(f"{figures['excused_moves']} moves after a session an event broke or off a removed pod")
    if figures["moves_onto_added_pods"]:
        not_counted.append(f"{figures['moves_onto_added_pods']} moves onto pods added during the run")
    aside = f", not counting {' or '.join(not_counted)}" if not_counted else ""
    if fallback:
        aside += (
            f" ({'no client' if not reached else f'only {reached} clients'} had {th.affinity_run} sessions, so the "
            f"{len(judged)} clients with {run} or more were judged, as with long sessions)"
        )
    if not broken:
        reason = f"all {len(judged)} judged clients (≥{run} sessions each) stayed on one pod{aside}"
    else:
        worst = max(spread)
        reason = (
            f"{len(broken)} of {len(judged)} judged clients moved between pods "
            f"({pct(broken_rate)}, allowed {pct(th.max_affinity_broken_rate)}), "
            f"up to {worst} pods per client{aside}"
        )
    worst_first = sorted(broken, key=lambda h: (-len(set(h.pods)), -len(h.moves), h.client))
    examples = [h.describe() for h in worst_first[:MAX_EXAMPLES]]
    verdict: Verdict = "fail" if broken_rate > th.max_affinity_broken_rate else "pass"
    return CheckResult(NAME, verdict, reason, figures, examples)
