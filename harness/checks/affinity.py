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
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from harness.checks.base import (
    MAX_EXAMPLES,
    NO_POD_IDENTITY,
    CheckResult,
    Thresholds,
    Verdict,
    no_pod_identity,
    pct,
    rate,
)
from harness.client.records import SessionRecord

__all__ = ["ClientHistory", "check_affinity", "client_histories"]

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


def client_histories(
    sessions: Sequence[SessionRecord], removed_pods: Collection[str] = (), added_pods: Collection[str] = ()
) -> dict[str, ClientHistory]:
    """Every client that had at least one session reaching a pod, with its moves sorted out."""
    by_client: dict[str, list[SessionRecord]] = {}
    for record in sessions:
        if record.pod is not None:
            by_client.setdefault(record.client, []).append(record)
    removed, added = frozenset(removed_pods), frozenset(added_pods)
    histories = {}
    for client, records in by_client.items():
        records.sort(key=lambda r: r.started)
        moves = []
        excused = onto_added = 0
        for index, (before, after) in enumerate(pairwise(records), start=1):
            old, new = before.pod, after.pod
            assert old is not None and new is not None  # only sessions with a handshake pod were kept
            if old == new:
                continue
            if before.disrupted_by is not None or old in removed:
                excused += 1
            elif new in added:
                onto_added += 1
            else:
                moves.append((index, old, new))
        pods = tuple(r.pod for r in records if r.pod is not None)
        histories[client] = ClientHistory(client, pods, tuple(moves), excused, onto_added)
    return histories


def check_affinity(
    sessions: Sequence[SessionRecord],
    th: Thresholds,
    removed_pods: Collection[str] = (),
    added_pods: Collection[str] = (),
) -> CheckResult:
    """Judge each client with at least ``th.affinity_run`` sessions that reached a pod."""
    histories = client_histories(sessions, removed_pods, added_pods)
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
        "clients": len({r.client for r in sessions}),
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

    if no_pod_identity(sessions):
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
