"""A model of kube-proxy: what a node does with a connection to a Service.

Only what decides where a connection goes is modelled, each rule from kube-proxy's behaviour (REFERENCE.md):

- each node has its own tables; nothing is shared between nodes, so a client whose connections arrive through
  several nodes meets several independent choices;
- ``sessionAffinity: ClientIP`` keys on the L4 source address of the connection as it reaches the node, remembers
  the endpoint for ``timeoutSeconds`` after the last new connection (iptables ``recent --rcheck --seconds``
  refreshed by ``--set``), and forgets an entry whose endpoint is removed or not ready;
- without affinity every new connection picks a random ready endpoint;
- a NodePort under ``externalTrafficPolicy: Cluster`` masquerades (the pod sees the node's address) and may pick
  any endpoint; under ``Local`` it keeps the source and picks only endpoints on its own node (none: dropped);
- ClusterIP traffic from a pod is handled by the kube-proxy of that pod's node and keeps the pod's address.

Randomness comes from a seed so that a run can be replayed: the first choice for an affinity key depends only on
(seed, node, service, key), not on the order in which connections happen to arrive.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.net import descriptors
from harness.net.relay import Counters, relay

__all__ = ["Endpoint", "ServiceProxy", "ServiceRule"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the pod's name
    host: str
    port: int
    node: str  # the node the pod runs on
    ready: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(str(data["name"]), str(data["host"]), int(data["port"]), str(data["node"]), bool(data["ready"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "node": self.node,
            "ready": self.ready,
        }


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """How one Service is reached through one node."""

    service: str
    affinity: str  # "None" | "ClientIP"
    timeout_seconds: float
    snat: bool  # NodePort with externalTrafficPolicy Cluster: masquerade to the node's address
    local_only: bool  # NodePort with externalTrafficPolicy Local: only endpoints on this node


@dataclass
class ServiceProxy:
    """One Service as one node's kube-proxy programs it: the choice of endpoint and the forwarding."""

    node: str
    node_ip: str
    rule: ServiceRule
    seed: int
    clock: Callable[[], float] = time.monotonic
    endpoints: list[Endpoint] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    per_endpoint: dict[str, int] = field(default_factory=dict)  # new connections per endpoint
    _affinity: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (endpoint name, last seen)
    _choices: dict[str, int] = field(default_factory=dict)  # key -> how many times a first choice was drawn
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}/{self.node}/{self.rule.service}")

    # -- the decision -------------------------------------------------------------------------------------

    def candidates(self) -> list[Endpoint]:
        ready = [e for e in self.endpoints if e.ready]
        if self.rule.local_only:
            ready = [e for e in ready if e.node == self.node]
        return sorted(ready, key=lambda e: e.name)

    def choose(self, source_ip: str) -> Endpoint | None:
        """The endpoint for a new connection from ``source_ip``, or None when the node drops it."""
        candidates = self.candidates()
        if not candidates:
            return None
        if self.rule.affinity != "ClientIP":
            return self._rng.choice(candidates)
        now = self.clock()
        entry = self._affinity.get(source_ip)
        if entry is not None:
            name, last = entry
            if now - last <= self.rule.timeout_seconds:
                for endpoint in candidates:
                    if endpoint.name == name:
                        self._affinity[source_ip] = (name, now)
                        return endpoint
        n = self._choices.get(source_ip, 0)
        self._choices[source_ip] = n + 1
        pick = random.Random(f"{self.seed}/{self.node}/{self.rule.service}/{source_ip}/{n}").choice(candidates)
        self._affinity[source_ip] = (pick.name, now)
        return pick

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoints, as an EndpointSlice update does; entries for endpoints that went away or are
        no longer ready are forgotten."""
        self.endpoints = list(endpoints)
        alive = {e.name for e in self.endpoints if e.ready}
        self._affinity = {k: v for k, v in self._affinity.items() if v[0] in alive}

    def affinity_table(self) -> dict[str, str]:
        now = self.clock()
        return {k: name for k, (name, last) in self._affinity.items() if now - last <= self.rule.timeout_seconds}

    # -- the forwarding -----------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source_ip = peer[0] if peer else "0.0.0.0"
        self.counters.connections += 1
        endpoint = self.choose(source_ip)
        if endpoint is None:
            self.counters.errors += 1
            writer.transport.abort()
            return
        self.per_endpoint[endpoint.name] = self.per_endpoint.get(endpoint.name, 0) + 1
        bind = self.node_ip if self.rule.snat else source_ip
        try:
            upstream = await asyncio.open_connection(endpoint.host, endpoint.port, local_addr=(bind, 0))
        except OSError as exc:
            descriptors.note(exc, f"{self.node}/{self.rule.service}: connect to {endpoint.name}")
            log.debug("%s/%s: %s unreachable: %s", self.node, self.rule.service, endpoint.name, exc)
            self.counters.errors += 1
            writer.transport.abort()
            return
        self.counters.active += 1
        try:
            await relay((reader, writer), upstream, self.counters)
        finally:
            self.counters.active -= 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "service": self.rule.service,
            "counters": self.counters.to_json(),
            "per_endpoint": dict(self.per_endpoint),
            "affinity": self.affinity_table(),
            "endpoints": [e.name for e in self.candidates()],
        }
