"""The load-balancer simulator: the cloud load balancer in front of every node's NodePort.

Like a Classic ELB with a TCP listener, it terminates each client connection, opens a new one from its own
address to the next node in round-robin order, and (as configured) sends a PROXY v1 or v2 header first so that
whatever reads it learns the client's address. One client's connections are therefore spread over all nodes,
which is what breaks per-node session affinity. Idle connections are closed after ``idle_timeout`` like the
ELB's idle timeout (no byte either way for that long).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from harness.net import proxyproto
from harness.net.relay import Counters, relay

__all__ = ["BalancerConfig", "LoadBalancer", "Target"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # the node's name
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class BalancerConfig:
    listen: tuple[str, int]
    targets: tuple[Target, ...]
    source_ip: str  # the balancer's own address, from which it connects to the nodes
    proxy_protocol: str = "v1"  # "v1" | "v2" | "none"
    idle_timeout: float = 60.0

    @classmethod
    def from_settings(
        cls, *, listen: tuple[str, int], targets: tuple[Target, ...], source_ip: str, settings: dict[str, Any]
    ) -> BalancerConfig:
        """A config from a topology's ``load_balancer`` settings (harness.topology.LoadBalancer as JSON)."""
        return cls(
            listen=listen,
            targets=targets,
            source_ip=source_ip,
            proxy_protocol=str(settings.get("proxy_protocol", "v1")),
            idle_timeout=float(settings.get("idle_timeout", 60.0)),
        )


@dataclass
class LoadBalancer:
    config: BalancerConfig
    counters: dict[str, Counters] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    _server: asyncio.Server | None = None
    _cycle: itertools.cycle[Target] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.counters = {t.name: Counters() for t in self.config.targets}
        self._cycle = itertools.cycle(self.config.targets)

    async def start(self) -> None:
        host, port = self.config.listen
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True, backlog=1024)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def set_enabled(self, name: str, enabled: bool) -> None:
        if name not in self.counters:
            raise KeyError(name)
        (self.disabled.discard if enabled else self.disabled.add)(name)

    def _next_target(self) -> Target | None:
        assert self._cycle is not None
        for _ in range(len(self.config.targets)):
            target = next(self._cycle)
            if target.name not in self.disabled:
                return target
        return None

    def _header(self, peer: tuple[str, int], local: tuple[str, int]) -> bytes:
        version = self.config.proxy_protocol
        if version == "none":
            return b""
        return proxyproto.encode(1 if version == "v1" else 2, peer[0], local[0], peer[1], local[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self._next_target()
        if target is None:
            writer.transport.abort()
            return
        counters = self.counters[target.name]
        counters.connections += 1
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        try:
            upstream = await asyncio.open_connection(target.host, target.port, local_addr=(self.config.source_ip, 0))
        except OSError as exc:
            log.debug("node %s unreachable: %s", target.name, exc)
            counters.errors += 1
            writer.transport.abort()
            return
        counters.active += 1
        try:
            await relay(
                (reader, writer),
                upstream,
                counters,
                idle_timeout=self.config.idle_timeout,
                first_up=self._header(peer, local),
            )
        finally:
            counters.active -= 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "listen": list(self.config.listen),
            "proxy_protocol": self.config.proxy_protocol,
            "disabled": sorted(self.disabled),
            "nodes": {name: c.to_json() for name, c in self.counters.items()},
        }
