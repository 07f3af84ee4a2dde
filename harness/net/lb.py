"""The load-balancer simulator: the cloud load balancer in front of every node's NodePort.

It terminates each client connection, opens a new one from its own address to a node, and (as configured) sends
a PROXY v1 or v2 header first so that whatever reads it learns the client's address. Modes follow what users
run (REFERENCE.md, "Load balancers in front of Kubernetes"):

- ``elb``, a Classic ELB with a TCP listener: round robin per connection, so one client's connections are
  spread over all nodes (what breaks per-node session affinity); after ``idle_timeout`` without a byte either
  way both connections are closed.
- ``nlb``: a flow hash picks the node (rendezvous hashing, so a node leaving moves only its own flows), or with
  ``source_ip_stickiness`` the source address alone; an idle flow is dropped with an RST to both sides.
- ``tcp``: a plain TCP balancer, round robin, idle close; send no header with ``proxy_protocol: none``.

A node leaves the rotation when it is taken out (``set_enabled``, or an ``out_of_rotation`` fault) or fails
``health_check.unhealthy_threshold`` TCP checks in a row, and comes back after ``healthy_threshold`` passing
ones. A node taken out keeps its open connections for ``draining_timeout``, then they are reset; a node that
failed its checks keeps them (as an ELB does). Faults (``harness.net.faults``) can be set and cleared while it
runs. Counters per node are readable at any time through :meth:`LoadBalancer.snapshot`.

Run alone (for benchmarks, or in front of a user's own nodes) as ``python -m harness.net.lb``.
"""

from __future__ import annotations

import _socket
import argparse
import asyncio
import contextlib
import errno
import hashlib
import importlib
import ipaddress
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from harness.errors import UsageError
from harness.net import descriptors, proxyproto
from harness.net.faults import Fault, FaultSet, HeaderPlan, Pipe, plan_header
from harness.net.relay import Counters, RawTransport, Splice

__all__ = [
    "MODES",
    "BalancerConfig",
    "BalancerError",
    "HealthCheck",
    "LoadBalancer",
    "Target",
    "event_loop_factory",
    "main",
]

log = logging.getLogger(__name__)

MODES: Final = ("elb", "nlb", "tcp")
_IP_BIND_ADDRESS_NO_PORT: Final = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_TCP_QUICKACK: Final = getattr(socket, "TCP_QUICKACK", 12)


class BalancerError(UsageError):
    """A balancer configuration or request that cannot be honoured; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # the node's name
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """TCP health checks: a connect within ``timeout`` every ``interval`` seconds is a pass."""

    interval: float = 10.0
    timeout: float = 5.0
    unhealthy_threshold: int = 2
    healthy_threshold: int = 2


@dataclass(frozen=True, slots=True)
class BalancerConfig:
    listen: tuple[str, int]
    targets: tuple[Target, ...]
    source_ip: str  # the balancer's own address, from which it connects to the nodes
    proxy_protocol: str = "v1"  # "v1" | "v2" | "none"
    idle_timeout: float = 60.0
    mode: str = "elb"  # "elb" | "nlb" | "tcp"
    source_ip_stickiness: bool = False
    draining_timeout: float = 300.0
    health_check: HealthCheck | None = None
    seed: int = 0
    connect_timeout: float = 10.0
    reuse_port: bool = False  # several processes share the listening port (SO_REUSEPORT)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BalancerError(f"load balancer mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.proxy_protocol not in ("v1", "v2", "none"):
            raise BalancerError(f"proxy_protocol {self.proxy_protocol!r}: use v1, v2 or none")
        if self.source_ip_stickiness and self.mode != "nlb":
            raise BalancerError("source_ip_stickiness needs mode nlb (Classic ELB TCP listeners have no stickiness)")
        if len({t.name for t in self.targets}) != len(self.targets):
            raise BalancerError("two targets with one name")

    @classmethod
    def from_settings(
        cls,
        *,
        listen: tuple[str, int],
        targets: tuple[Target, ...],
        source_ip: str,
        settings: dict[str, Any],
        seed: int = 0,
    ) -> BalancerConfig:
        """A config from a topology's ``load_balancer`` settings (harness.topology.LoadBalancer as JSON)."""
        check = settings.get("health_check")
        return cls(
            listen=listen,
            targets=targets,
            source_ip=source_ip,
            proxy_protocol=str(settings.get("proxy_protocol", "v1")),
            idle_timeout=float(settings.get("idle_timeout", 60.0)),
            mode=str(settings.get("mode", "elb")),
            source_ip_stickiness=bool(settings.get("source_ip_stickiness", False)),
            draining_timeout=float(settings.get("draining_timeout", 300.0)),
            health_check=None if not check else HealthCheck(**{k: check[k] for k in check}),
            seed=seed,
        )


@dataclass
class _Health:
    healthy: bool = True
    passes: int = 0  # consecutive
    failures: int = 0  # consecutive
    checks: int = 0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "checks": self.checks, "last_error": self.last_error}


@dataclass
class _State:
    rotation: list[Target] = field(default_factory=list)
    next: int = 0  # round robin position


class LoadBalancer:
    """The simulator itself: ``await start()``, then it balances until ``await close()``."""

    def __init__(self, config: BalancerConfig) -> None:
        self.config = config
        self.counters: dict[str, Counters] = {t.name: Counters() for t in config.targets}
        self.disabled: set[str] = set()  # taken out with set_enabled(name, False)
        self.faults = FaultSet()
        self.health: dict[str, _Health] = {t.name: _Health() for t in config.targets}
        self.rejected = 0  # connections reset because no node was in rotation
        self._targets = {t.name: t for t in config.targets}
        self._literal = {t.name: _is_ip(t.host) for t in config.targets}
        self._live: dict[str, set[Splice]] = {t.name: set() for t in config.targets}
        self._state = _State()
        self._drains: dict[str, asyncio.TimerHandle] = {}
        self._rng = random.Random(f"lb/{config.seed}")
        self._nowhere = Counters()  # what connections count before they have a node
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pp_version = {"v1": 1, "v2": 2}.get(config.proxy_protocol)  # None: no header
        self._refresh()

    # -- life cycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host, port = self.config.listen
        self._server = await self._loop.create_server(
            self._new_connection,
            host,
            port,
            reuse_address=True,
            reuse_port=self.config.reuse_port or None,
            backlog=4096,
        )
        self._spawn(self._sweep())
        if self.config.health_check is not None:
            for target in self.config.targets:
                self._spawn(self._check_health(target, self.config.health_check))
        self._refresh()

    async def close(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
        for timer in self._drains.values():
            timer.cancel()
        self._drains.clear()
        for task in list(self._tasks):
            task.cancel()
        for splices in self._live.values():
            for splice in list(splices):
                splice.reset()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for _ in range(100):  # let the transports report their end
            if not any(self._live.values()):
                break
            await asyncio.sleep(0.01)

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when ``listen`` asked for port 0)."""
        if self._server is None or not self._server.sockets:
            return self.config.listen
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task: asyncio.Task[None] = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- rotation --------------------------------------------------------------------------------------------------

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Take a node out of rotation (its open connections drain) or put it back."""
        if name not in self.counters:
            raise KeyError(name)
        (self.disabled.discard if enabled else self.disabled.add)(name)
        self._refresh()

    def in_rotation(self) -> list[str]:
        return [t.name for t in self._state.rotation]

    def _taken_out(self, name: str) -> bool:
        return name in self.disabled or any(f.kind == "out_of_rotation" for f in self.faults.for_node(name))

    def _refresh(self) -> None:
        rotation = []
        for target in self.config.targets:
            name = target.name
            if self._taken_out(name):
                if name not in self._drains and self._loop is not None:
                    self._drains[name] = self._loop.call_later(self.config.draining_timeout, self._drained, name)
                continue
            timer = self._drains.pop(name, None)
            if timer is not None:
                timer.cancel()
            if self.health[name].healthy:
                rotation.append(target)
        self._state.rotation = rotation

    def _drained(self, name: str) -> None:
        """The draining timeout of a node taken out: what is still open is force-closed."""
        self._drains.pop(name, None)
        counters = self.counters[name]
        for splice in list(self._live[name]):
            counters.drained += 1
            splice.reset()
        log.info("node %s drained", name)

    def _choose(self, peer: tuple[str, int], local: tuple[str, int]) -> Target | None:
        rotation = self._state.rotation
        if not rotation:
            return None
        if self.config.mode != "nlb":
            state = self._state
            target = rotation[state.next % len(rotation)]
            state.next += 1
            return target
        if self.config.source_ip_stickiness:
            key = f"{self.config.seed}|{peer[0]}"
        else:
            key = f"{self.config.seed}|{peer[0]}|{peer[1]}|{local[0]}|{local[1]}"
        return max(rotation, key=lambda t: hashlib.blake2b(f"{key}|{t.name}".encode(), digest_size=8).digest())

    # -- faults ------------------------------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        """Set a fault now; toxics reach the open connections of the nodes it names, too."""
        if fault.node != "*" and fault.node not in self._targets:
            raise BalancerError(f"fault {fault.kind}: no node {fault.node!r}; nodes: {', '.join(self._targets)}")
        self.faults.add(fault)
        self._faults_changed(fault.node)
        return fault

    def clear_faults(self, *, node: str | None = None, name: str | None = None) -> list[Fault]:
        gone = self.faults.remove(node=node, name=name)
        for touched in {f.node for f in gone}:
            self._faults_changed(touched)
        return gone

    def _faults_changed(self, node: str) -> None:
        self._refresh()
        for name in self._targets if node == "*" else (node,):
            faults = self.faults.for_node(name)
            for splice in list(self._live[name]):
                self._apply_toxics(splice, [f for f in faults if f.is_toxic and self._hits(splice, f)])

    def _hits(self, splice: Splice, fault: Fault) -> bool:
        if fault.toxicity >= 1.0:
            return True
        key = f"{fault.node}/{fault.name}"
        hit = splice.rolls.get(key)
        if hit is None:
            hit = splice.rolls[key] = self._rng.random() < fault.toxicity
        return hit

    def _apply_toxics(self, splice: Splice, toxics: Sequence[Fault]) -> None:
        for side, stream in ((splice.client, "upstream"), (splice.server, "downstream")):
            mine = [t for t in toxics if t.stream == stream]
            if side.pipe is not None:
                side.pipe.set_toxics(mine)
            elif mine:
                side.pipe = Pipe(side, mine, self._rng)

    # -- connections ---------------------------------------------------------------------------------------------

    def _new_connection(self) -> asyncio.Protocol:
        return Splice(self._nowhere, self._on_accept).client

    def _on_accept(self, splice: Splice) -> None:
        peer, local = splice.peername(), splice.sockname()
        target = self._choose(peer, local) if peer and local else None
        if target is None:
            self.rejected += 1
            splice.reset()
            return
        counters = self.counters[target.name]
        counters.connections += 1
        counters.active += 1
        splice.counters = counters
        splice.node = target.name
        splice.on_done = self._on_done
        self._live[target.name].add(splice)
        header = self._header(peer, local, counters)
        plan: HeaderPlan | None = None
        if len(self.faults):
            faults = [f for f in self.faults.for_node(target.name) if self._hits(splice, f)]
            plan = plan_header([f for f in faults if f.is_header], header, peer, local)
            if plan is not None:
                counters.header_errors += 1
            self._apply_toxics(splice, [f for f in faults if f.is_toxic])
        loop = self._loop
        assert loop is not None
        if self._literal[target.name]:
            try:
                sock = self._connecting_socket(target)
            except OSError as exc:
                descriptors.note(exc, f"balancer: connect to {target.name}")
                log.debug("node %s unreachable: %s", target.name, exc)
                counters.errors += 1
                splice.reset_sent = True
                splice.reset()
                return
            RawTransport(loop, sock, splice.server)  # connection_made: splice.server has its transport
            self._open(splice, header, plan)
        else:
            splice.connecting = True
            splice.connect_task = loop.create_task(self._connect(splice, target, header, plan))

    def _on_done(self, splice: Splice) -> None:
        splice.counters.active -= 1
        self._live[splice.node].discard(splice)

    def _header(self, peer: tuple[str, int], local: tuple[str, int], counters: Counters) -> bytes:
        if self._pp_version is None:
            return b""
        try:
            return proxyproto.encode(self._pp_version, peer[0], local[0], peer[1], local[1])
        except ValueError as exc:  # e.g. addresses of two families: say UNKNOWN, as a balancer must
            log.warning("cannot encode a PROXY header for %s → %s: %s", peer, local, exc)
            counters.header_errors += 1
            return (
                proxyproto.encode_v1_unknown() if self.config.proxy_protocol == "v1" else proxyproto.encode_v2_local()
            )

    def _bound_socket(self, target: Target) -> _socket.socket:
        """A non-blocking socket bound to the balancer's source address, for a connection to ``target``
        (``_socket``: no enum conversions on every attribute read, as ``socket.socket`` makes)."""
        family = _socket.AF_INET6 if ":" in target.host else _socket.AF_INET
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if family == _socket.AF_INET:
                # choose the source port at connect time, per destination: many more connections fit
                sock.setsockopt(_socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.config.source_ip, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    def _probe_socket(self, target: Target) -> socket.socket:
        raw = self._bound_socket(target)
        return socket.socket(raw.family, raw.type, fileno=raw.detach())

    def _connecting_socket(self, target: Target) -> _socket.socket:
        """A socket whose connect to the node has started, for a :class:`RawTransport`."""
        sock = self._bound_socket(target)
        try:
            if self._pp_version is not None:
                # the handshake's last ACK rides on the header, as with HAProxy's tcp-smart-connect (not
                # without a header: a node that speaks first would wait for a delayed ACK)
                sock.setsockopt(_socket.IPPROTO_TCP, _TCP_QUICKACK, 0)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)  # as asyncio's transports do
            err = sock.connect_ex((target.host, target.port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect to {target.host}:{target.port}: {os.strerror(err)}")
        except BaseException:
            sock.close()
            raise
        return sock

    async def _sock_connect(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """``loop.sock_connect`` without its address resolution (uvloop resolves even a literal address in a
        thread, which costs more than the rest of a new connection)."""
        try:
            sock.connect(address)
        except BlockingIOError:
            pass
        else:
            return
        loop = self._loop
        assert loop is not None
        done: asyncio.Future[None] = loop.create_future()
        fd = sock.fileno()

        def writable() -> None:
            loop.remove_writer(fd)
            if done.done():
                return
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                done.set_exception(OSError(err, f"connect to {address[0]}:{address[1]}: {os.strerror(err)}"))
            else:
                done.set_result(None)

        loop.add_writer(fd, writable)
        try:
            await done
        finally:
            loop.remove_writer(fd)

    async def _connect(self, splice: Splice, target: Target, header: bytes, plan: HeaderPlan | None) -> None:
        """A node given by name: resolve and connect through the loop (a task, unlike the fast path)."""
        loop = self._loop
        assert loop is not None
        try:
            await loop.create_connection(
                splice.server_protocol, target.host, target.port, local_addr=(self.config.source_ip, 0)
            )
            splice.confirmed = True
        except asyncio.CancelledError:
            pass  # the client went away, or the connect timed out
        except OSError as exc:
            descriptors.note(exc, f"balancer: connect to {target.name}")
            log.debug("node %s unreachable: %s", target.name, exc)
            splice.counters.errors += 1
            splice.reset_sent = True
            splice.reset()
        else:
            self._open(splice, header, plan)
        finally:
            splice.connecting = False
            splice.connect_task = None
            splice.maybe_finish()

    def _open(self, splice: Splice, header: bytes, plan: HeaderPlan | None) -> None:
        if splice.closed:
            return
        if plan is None:
            splice.open(header)
        elif not plan.delay:
            splice.open(plan.data)
        else:
            splice.open(hold=True)
            self._spawn(self._send_late(splice, plan))

    async def _send_late(self, splice: Splice, plan: HeaderPlan) -> None:
        """A delayed header: after ``plan.delay``, or a byte at a time over it (a slowloris on the receiver)."""
        if plan.split and len(plan.data) > 1:
            step = plan.delay / len(plan.data)
            for i in range(len(plan.data)):
                await asyncio.sleep(step)
                if splice.closed:
                    return
                splice.send_first(plan.data[i : i + 1])
        else:
            await asyncio.sleep(plan.delay)
            if splice.closed:
                return
            splice.send_first(plan.data)
        splice.release()

    async def _sweep(self) -> None:
        """Idle timeouts and connect timeouts of every open connection, checked a few times per timeout."""
        config = self.config
        step = max(0.01, min(1.0, config.idle_timeout / 4, config.connect_timeout / 4))
        reset_idle = config.mode == "nlb"
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for name, splices in self._live.items():
                counters = self.counters[name]
                for splice in list(splices):
                    if splice.closed:
                        continue
                    if not splice.confirmed and not self._confirm(splice):
                        if now - splice.started >= config.connect_timeout:
                            counters.errors += 1
                            splice.reset_sent = True
                            splice.reset()
                    elif now - splice.last >= config.idle_timeout:
                        counters.idle_closed += 1
                        if reset_idle:
                            splice.reset()
                        else:
                            splice.close()

    @staticmethod
    def _confirm(splice: Splice) -> bool:
        """Whether the node's socket has connected (``getpeername`` fails while the handshake is on)."""
        transport = splice.server.transport
        if transport is None:
            return False
        raw = transport.get_extra_info("socket")
        try:
            raw.getpeername()
        except OSError:
            return False
        splice.confirmed = True
        return True

    # -- health checks ---------------------------------------------------------------------------------------------

    async def _check_health(self, target: Target, check: HealthCheck) -> None:
        health = self.health[target.name]
        while True:
            error = await self._probe(target, check.timeout)
            health.checks += 1
            health.last_error = error
            if error is None:
                health.passes, health.failures = health.passes + 1, 0
                if not health.healthy and health.passes >= check.healthy_threshold:
                    health.healthy = True
                    log.info("node %s passed %d health checks: back in rotation", target.name, health.passes)
                    self._refresh()
            else:
                health.passes, health.failures = 0, health.failures + 1
                if health.healthy and health.failures >= check.unhealthy_threshold:
                    health.healthy = False
                    log.info(
                        "node %s failed %d health checks (%s): out of rotation", target.name, health.failures, error
                    )
                    self._refresh()
            await asyncio.sleep(check.interval)

    async def _probe(self, target: Target, timeout: float) -> str | None:
        """None if a TCP connection to the node opens within ``timeout``, else why not."""
        assert self._loop is not None
        try:
            sock = self._probe_socket(target)
        except OSError as exc:
            return f"cannot bind {self.config.source_ip}: {exc}"
        try:
            async with asyncio.timeout(timeout):
                await self._sock_connect(sock, (target.host, target.port))
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except OSError as exc:
            return exc.strerror or str(exc)
        finally:
            sock.close()
        return None

    # -- reading it ----------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "listen": list(self.address),
            "mode": self.config.mode,
            "proxy_protocol": self.config.proxy_protocol,
            "disabled": sorted(self.disabled),
            "in_rotation": self.in_rotation(),
            "draining": sorted(self._drains),
            "health": {n: h.to_json() for n, h in self.health.items()} if self.config.health_check else {},
            "faults": self.faults.to_json(),
            "rejected": self.rejected,
            "nodes": {name: c.to_json() for name, c in self.counters.items()},
        }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def event_loop_factory(use_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (the data path is several times faster), else asyncio's."""
    if use_uvloop:
        with contextlib.suppress(ImportError):
            factory: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module("uvloop").new_event_loop
            return factory
    return asyncio.new_event_loop


# --- standalone ----------------------------------------------------------------------------------------------


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _target(value: str) -> Target:
    name, sep, rest = value.partition("=")
    host, port = _hostport(rest if sep else value)
    return Target(name if sep else f"{host}:{port}", host, port)


async def _serve(config: BalancerConfig) -> None:
    lb = LoadBalancer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await lb.start()
    print(f"ready {lb.address[0]}:{lb.address[1]} pid {os.getpid()}", flush=True)
    try:
        await stop.wait()
    finally:
        await lb.close()


def _run_worker(config: BalancerConfig, use_uvloop: bool) -> int:
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(use_uvloop)) as runner:
            runner.run(_serve(config))
    except OSError as exc:
        print(f"lb: cannot listen on {config.listen[0]}:{config.listen[1]}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.net.lb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_hostport, required=True, help="HOST:PORT to listen on")
    parser.add_argument("--target", type=_target, action="append", required=True, help="[NAME=]HOST:PORT, repeat")
    parser.add_argument("--source-ip", default=None, help="address to connect to the targets from")
    parser.add_argument("--mode", choices=MODES, default="elb")
    parser.add_argument("--proxy-protocol", choices=("v1", "v2", "none"), default="v1")
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--draining-timeout", type=float, default=300.0)
    parser.add_argument("--source-ip-stickiness", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="lb %(levelname)s %(name)s: %(message)s")
    try:
        config = BalancerConfig(
            listen=args.listen,
            targets=tuple(args.target),
            source_ip=args.source_ip or args.listen[0],
            proxy_protocol=args.proxy_protocol,
            idle_timeout=args.idle_timeout,
            mode=args.mode,
            source_ip_stickiness=args.source_ip_stickiness,
            draining_timeout=args.draining_timeout,
            seed=args.seed,
            reuse_port=args.workers > 1,
        )
    except BalancerError as exc:
        parser.error(str(exc))
    if args.workers <= 1:
        return _run_worker(config, not args.no_uvloop)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os._exit(_run_worker(config, not args.no_uvloop))
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        while True:
            try:
                _, code = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        status = max(status, os.waitstatus_to_exitcode(code))
    return status


if __name__ == "__main__":
    sys.exit(main())
