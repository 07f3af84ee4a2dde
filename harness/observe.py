"""Seeing that an event took effect: the harness checks its own work before it calls an event done.

A scaled-up pod counts as there only when it answers an Engine.IO handshake; whether the topology then routes
anything to it is a finding about the topology, not about the harness. So, after an event:

- every new app pod is looked for *through the whole chain* (entry → nodes → tier → pod): handshakes from fresh
  probe addresses, each from an address no client uses, until every new pod has named itself in ``x-pod``;
- a new pod that no probe reached is asked directly: answering there, it is alive and the topology keeps
  traffic away from it (said so in the record); not answering, the event did not take effect;
- every removed pod must stop answering, and every new tier pod must answer;
- a node taken out of the balancer, or put back, must be seen so by the balancer.

Probes are handshakes only (no session records, no cookies), from ``127.240.0.0/12``-style addresses that no
client address mode uses, each in a /24 of its own (nginx ``ip_hash`` hashes three octets).
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from harness.cluster.base import Pod

__all__ = ["NotDone", "Observation", "entry_handshake", "observe_event", "probe_addresses"]

log = logging.getLogger(__name__)

HANDSHAKE_PATH = "/socket.io/?EIO=4&transport=polling"
PROBE_BUDGET = 5.0  # seconds spent looking for new pods through the entry
GONE_BUDGET = 10.0  # seconds a removed pod gets to stop answering
PROBE_TIMEOUT = 1.0


class NotDone(Exception):
    """An event's effect was not observed: the harness's own action failed."""


@dataclass(frozen=True)
class Observation:
    text: str  # what was seen, for the record and the report
    unreached: tuple[str, ...] = ()  # new pods alive (answering directly) that no probe through the entry reached


def probe_addresses() -> Iterator[str]:
    """Source addresses for probes, each in a /24 of its own, none used by clients (127.240.0.1 onwards)."""
    for n in itertools.count():
        yield f"127.{240 + (n // 256) % 16}.{n % 256}.{1 + n // 4096 % 254}"


def entry_handshake(url: str, source: str | None, timeout: float = PROBE_TIMEOUT) -> str | None:
    """One polling handshake at ``url`` from ``source``: the ``x-pod`` of a 200 answer ('' if none), or None."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    bind = (source, 0) if source and _is_loopback(host) else None
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=bind)
    try:
        conn.request("GET", HANDSHAKE_PATH, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read(64)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if response.status != 200 or not body.startswith(b"0"):
        return None
    return response.getheader("x-pod", "") or ""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def find_through_entry(
    url: str,
    wanted: set[str],
    addresses: Iterator[str],
    *,
    budget: float = PROBE_BUDGET,
    clock: Callable[[], float] = time.monotonic,
    handshake: Callable[[str, str | None], str | None] = entry_handshake,
) -> set[str]:
    """Handshakes through the entry from fresh addresses until every pod of ``wanted`` has answered or the
    budget is spent; returns the wanted pods that answered."""
    seen: set[str] = set()
    deadline = clock() + budget
    while wanted - seen and clock() < deadline:
        pod = handshake(url, next(addresses))
        if pod in wanted:
            seen.add(pod)
    return seen


def observe_event(
    cluster: object,
    action: str,
    component: str,
    removed: Sequence[Pod],
    added: Sequence[Pod],
    addresses: Iterator[str],
    *,
    node: str | None = None,
    enabled: bool | None = None,
    budget: float = PROBE_BUDGET,
    gone_budget: float = GONE_BUDGET,
) -> Observation:
    """Check that an event did what it promised, through ``cluster`` (`harness.cluster.base.Cluster`); raise
    `NotDone` saying what was not seen."""
    answers: Callable[[Pod], bool | None] = getattr(cluster, "pod_answers", lambda _pod: None)
    parts: list[str] = []
    if action in ("lb-out", "lb-in"):
        state: Callable[[str], bool | None] = getattr(cluster, "node_in_balancer", lambda _node: None)
        assert node is not None
        seen = state(node)
        if seen is not None and seen != enabled:
            raise NotDone(f"the balancer still has {node} {'out of' if enabled else 'in'} its rotation")
        parts.append(f"the balancer has {node} {'in' if enabled else 'out of'} its rotation")
    gone_deadline = time.monotonic() + gone_budget
    for pod in removed:
        while answers(pod) and time.monotonic() < gone_deadline:
            time.sleep(0.1)
        if answers(pod):
            raise NotDone(f"{pod.name} was removed but still answers at {pod.address}:{pod.port}")
    if removed:
        parts.append(f"{', '.join(p.name for p in removed)} no longer answer{'s' if len(removed) == 1 else ''}")
    unreached: list[str] = []
    if added and component == "app":
        names = {p.name for p in added}
        entry = getattr(cluster, "entry_url", None)
        reached = find_through_entry(entry, names, addresses, budget=budget) if entry and budget > 0 else set()
        unknown: list[str] = []
        for pod in added:
            if pod.name in reached:
                continue
            direct = answers(pod)
            if direct is False:
                raise NotDone(f"{pod.name} never answered a handshake, directly or through the entry")
            (unreached if direct else unknown).append(pod.name)
        if reached:
            parts.append(f"{', '.join(sorted(reached))} answered handshakes through the entry")
        if unreached:
            parts.append(
                f"{', '.join(unreached)} answered directly, but no handshake through the entry reached them "
                f"within {budget:g} s"
            )
        if unknown:  # a backend that cannot reach pods directly: its own readiness wait is all there is
            parts.append(
                f"no handshake through the entry reached {', '.join(unknown)} within {budget:g} s "
                "(this backend cannot ask a pod directly)"
            )
    elif added:
        for pod in added:
            if answers(pod) is False:
                raise NotDone(f"tier pod {pod.name} never answered a handshake")
        parts.append(f"{', '.join(p.name for p in added)} answered handshakes")
    return Observation("; ".join(parts) or "nothing to observe", tuple(unreached))
