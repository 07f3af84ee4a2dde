"""Faults on demand in the balancer's data path, in Toxiproxy's vocabulary, plus faults of the PROXY header.

A scenario or a test asks the running balancer for a fault on one node or on all (``"*"``), and clears it again;
nothing restarts. The words are Toxiproxy's so that people who know it need no new ones: ``latency`` (with
``jitter``), ``bandwidth``, ``slow_close``, ``timeout``, ``reset_peer``, ``slicer``, ``limit_data``, each with
Toxiproxy's attributes and units (milliseconds, KB/s, microseconds for the slicer's delay), a ``stream``
(``upstream`` = client → node, ``downstream`` = node → client, Toxiproxy's default) and a ``toxicity`` (the
chance that a connection is affected, drawn once per connection). Like Toxiproxy's toxics they act on open
connections as well as new ones.

What Toxiproxy cannot do, because it knows nothing of PROXY headers, are the faults a PROXY receiver must
survive: a ``malformed`` header (any of ``proxyproto.MALFORMED_KINDS`` as ``variant``), a ``duplicated`` one,
and a ``delayed`` one (held back ``delay`` ms, optionally ``split`` into single bytes spread over that time: a
slowloris on the receiver's header timeout). They apply to new connections. ``out_of_rotation`` takes a node out
of the balancer's rotation (its open connections drain) for as long as the fault is set.

:class:`Pipe` applies the toxics of one direction of one connection: while a connection has none, the data path
does not touch it at all.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from harness.errors import UsageError
from harness.net import proxyproto

__all__ = [
    "FAULT_KINDS",
    "HEADER_KINDS",
    "TOXIC_KINDS",
    "Fault",
    "FaultError",
    "FaultSet",
    "HeaderPlan",
    "Pipe",
    "Sink",
    "plan_header",
]


class FaultError(UsageError):
    """A fault that cannot be applied as asked (unknown kind, attribute or value); the message says which."""


# kind -> {attribute: default}; None marks an attribute without a default (required)
TOXIC_KINDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "latency": {"latency": 0, "jitter": 0},  # ms each
    "bandwidth": {"rate": None},  # KB/s
    "slow_close": {"delay": 0},  # ms
    "timeout": {"timeout": 0},  # ms; 0: never close, data dropped until the fault is cleared
    "reset_peer": {"timeout": 0},  # ms
    "slicer": {"average_size": None, "size_variation": 0, "delay": 0},  # bytes, bytes, µs
    "limit_data": {"bytes": None},
}
HEADER_KINDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "malformed": {"variant": ""},  # "" = v1_bad_protocol or v2_bad_signature, after the configured version
    "duplicated": {},
    "delayed": {"delay": None, "split": False},  # ms; split: one byte at a time over that delay
}
FAULT_KINDS: Final[frozenset[str]] = frozenset({*TOXIC_KINDS, *HEADER_KINDS, "out_of_rotation"})
STREAMS: Final = ("downstream", "upstream")


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: what, where (a node name or ``"*"``), which direction, how likely per connection."""

    kind: str
    node: str = "*"
    params: Mapping[str, Any] = field(default_factory=dict)
    stream: str = "downstream"
    toxicity: float = 1.0
    name: str = ""  # default: "<kind>_<stream>" as Toxiproxy names its toxics; one fault per (node, name)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
        if self.stream not in STREAMS:
            raise FaultError(f"fault {self.kind}: stream {self.stream!r} is not upstream or downstream")
        if not 0.0 <= self.toxicity <= 1.0:
            raise FaultError(f"fault {self.kind}: toxicity {self.toxicity} is not between 0 and 1")
        object.__setattr__(self, "params", _check_params(self.kind, self.params))
        if not self.name:
            object.__setattr__(self, "name", f"{self.kind}_{self.stream}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from a control request: ``{"kind", "node"?, "params"?, "stream"?, "toxicity"?, "name"?}``."""
        known = {"kind", "node", "params", "stream", "toxicity", "name", "op"}
        extra = sorted(set(data) - known)
        if extra:
            raise FaultError(f"fault: unknown field(s) {', '.join(extra)}; known: {', '.join(sorted(known))}")
        if "kind" not in data:
            raise FaultError("fault: no kind")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise FaultError(f"fault {data['kind']}: params must be an object, not {params!r}")
        try:
            toxicity = float(data.get("toxicity", 1.0))
        except (TypeError, ValueError) as exc:
            raise FaultError(f"fault {data['kind']}: toxicity {data.get('toxicity')!r} is not a number") from exc
        return cls(
            kind=str(data["kind"]),
            node=str(data.get("node", "*")),
            params=dict(params),
            stream=str(data.get("stream", "downstream")),
            toxicity=toxicity,
            name=str(data.get("name", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "node": self.node,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "params": dict(self.params),
        }

    @property
    def is_toxic(self) -> bool:
        return self.kind in TOXIC_KINDS

    @property
    def is_header(self) -> bool:
        return self.kind in HEADER_KINDS

    def __getitem__(self, attribute: str) -> Any:
        return self.params[attribute]


def _check_params(kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
    spec = TOXIC_KINDS.get(kind) or HEADER_KINDS.get(kind) or {}
    unknown = sorted(set(given) - set(spec))
    if unknown:
        allowed = ", ".join(spec) or "none"
        raise FaultError(f"fault {kind}: unknown attribute(s) {', '.join(unknown)}; allowed: {allowed}")
    params: dict[str, Any] = {}
    for attribute, default in spec.items():
        value = given.get(attribute, default)
        if value is None:
            raise FaultError(f"fault {kind}: attribute {attribute} is required")
        if isinstance(default, bool) or attribute == "split":
            if not isinstance(value, bool):
                raise FaultError(f"fault {kind}: {attribute} must be true or false, not {value!r}")
        elif attribute == "variant":
            if value and value not in proxyproto.MALFORMED_KINDS:
                known = ", ".join(proxyproto.MALFORMED_KINDS)
                raise FaultError(f"fault malformed: unknown variant {value!r}; known: {known}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise FaultError(f"fault {kind}: {attribute} must be a number ≥ 0, not {value!r}")
        params[attribute] = value
    if kind in ("bandwidth", "slicer") and params.get("rate", params.get("average_size")) == 0:
        raise FaultError(f"fault {kind}: {'rate' if kind == 'bandwidth' else 'average_size'} must be > 0")
    return params


class FaultSet:
    """The faults in force, per node and for all; ``version`` changes with every change."""

    def __init__(self) -> None:
        self._faults: dict[tuple[str, str], Fault] = {}
        self.version = 0

    def add(self, fault: Fault) -> Fault:
        """Set a fault; one with the same node and name is replaced."""
        self._faults.pop((fault.node, fault.name), None)
        self._faults[(fault.node, fault.name)] = fault
        self.version += 1
        return fault

    def remove(self, *, node: str | None = None, name: str | None = None) -> list[Fault]:
        """Clear the faults matching both filters (None: any); ``node="*"`` matches the faults set for all."""
        gone = [f for f in self._faults.values() if node in (None, f.node) and name in (None, f.name)]
        for fault in gone:
            del self._faults[(fault.node, fault.name)]
        if gone:
            self.version += 1
        return gone

    def for_node(self, node: str) -> list[Fault]:
        return [f for f in self._faults.values() if f.node in ("*", node)]

    def all(self) -> list[Fault]:
        return list(self._faults.values())

    def __len__(self) -> int:
        return len(self._faults)

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self._faults.values()]


# --- the PROXY header -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderPlan:
    """What to send in place of the header: ``data`` after ``delay`` s, whole or (``split``) a byte at a time."""

    data: bytes
    delay: float = 0.0
    split: bool = False


def plan_header(
    faults: Sequence[Fault], header: bytes, peer: tuple[str, int], local: tuple[str, int]
) -> HeaderPlan | None:
    """The header as the header faults among ``faults`` make it, or None when none applies."""
    plan: HeaderPlan | None = None
    data = header
    for fault in faults:
        if fault.kind == "malformed":
            variant = fault["variant"] or ("v2_bad_signature" if header[:1] == b"\r" else "v1_bad_protocol")
            # "no_header" means what it says: the node gets the client's bytes with nothing in front
            data = (
                b"" if variant == "no_header" else proxyproto.malformed(variant, peer[0], local[0], peer[1], local[1])
            )
            plan = HeaderPlan(data, plan.delay if plan else 0.0, plan.split if plan else False)
        elif fault.kind == "duplicated":
            data = data + data
            plan = HeaderPlan(data, plan.delay if plan else 0.0, plan.split if plan else False)
        elif fault.kind == "delayed":
            plan = HeaderPlan(data, fault["delay"] / 1000.0, bool(fault["split"]))
    return plan


# --- toxics on one direction of one connection ----------------------------------------------------------------


class Sink(Protocol):
    """Where a pipe delivers: the other socket of the connection, and the connection's controls."""

    def write(self, data: bytes) -> None: ...

    def write_eof(self) -> None: ...

    def pause_source(self, reason: int = 4) -> None: ...

    def resume_source(self, reason: int = 4) -> None: ...

    def close(self) -> None: ...

    def reset(self) -> None: ...


_HIGH_WATER: Final = 262144
_LOW_WATER: Final = 65536


class Pipe:
    """The toxics of one direction of one connection, applied chunk by chunk in the order they arrived.

    Data goes through a queue served by one task while any toxic is set or any byte is still queued; once the
    toxics are cleared and the queue has drained, ``passthrough`` is true and the connection writes directly.
    Timers of ``timeout`` and ``reset_peer`` start when the toxic reaches the connection.
    """

    def __init__(self, sink: Sink, toxics: Sequence[Fault], rng: random.Random) -> None:
        self._sink = sink
        self._rng = rng
        self._loop = asyncio.get_running_loop()
        self._queue: deque[tuple[float, bytes]] = deque()
        self._queued = 0
        self._task: asyncio.Task[None] | None = None
        self._timers: dict[str, asyncio.Handle] = {}
        self._toxics: dict[str, Fault] = {}
        self._limit_sent = 0
        self._stopped = False
        self.set_toxics(toxics)

    @property
    def passthrough(self) -> bool:
        return not self._toxics and self._task is None

    @property
    def kinds(self) -> list[str]:
        return sorted(self._toxics)

    def set_toxics(self, toxics: Sequence[Fault]) -> None:
        new = {t.kind: t for t in toxics}  # one of each kind: the last set wins
        for kind in [k for k in self._timers if self._toxics.get(k) is not new.get(k)]:
            self._timers.pop(kind).cancel()
        if "limit_data" in new and self._toxics.get("limit_data") is not new["limit_data"]:
            self._limit_sent = 0
        self._toxics = new
        for kind, action in (("timeout", self._sink.close), ("reset_peer", self._sink.reset)):
            toxic = new.get(kind)
            if toxic is None or kind in self._timers:
                continue
            if kind == "timeout" and not toxic["timeout"]:
                continue  # data is dropped, the connection stays open
            if toxic["timeout"]:
                self._timers[kind] = self._loop.call_later(toxic["timeout"] / 1000.0, action)
            else:
                self._timers[kind] = self._loop.call_soon(action)
        if self._queue and self._task is None:
            self._start()

    def feed(self, data: bytes) -> None:
        if self._stopped:
            return
        self._queue.append((self._loop.time(), data))
        self._queued += len(data)
        if self._queued > _HIGH_WATER:
            self._sink.pause_source()
        if self._task is None:
            self._start()

    def feed_eof(self) -> None:
        if not self._stopped:
            self._queue.append((self._loop.time(), b""))
            if self._task is None:
                self._start()

    def stop(self) -> None:
        """The connection is closing: drop what is queued, cancel the timers."""
        self._stopped = True
        self._queue.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()

    def _start(self) -> None:
        self._task = self._loop.create_task(self._serve())

    async def _serve(self) -> None:
        try:
            while self._queue and not self._stopped:
                arrived, chunk = self._queue.popleft()
                self._queued -= len(chunk)
                if self._queued < _LOW_WATER:
                    self._sink.resume_source()
                await self._deliver(arrived, chunk)
        finally:
            self._task = None

    async def _deliver(self, arrived: float, chunk: bytes) -> None:
        toxics = self._toxics
        if "timeout" in toxics:
            return  # dropped, EOF included
        latency = toxics.get("latency")
        if latency is not None:
            jitter = latency["jitter"]
            delay = max(0.0, latency["latency"] + (self._rng.uniform(-jitter, jitter) if jitter else 0.0)) / 1000
            wait = arrived + delay - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        if not chunk:
            slow = self._toxics.get("slow_close")
            if slow is not None and slow["delay"]:
                await asyncio.sleep(slow["delay"] / 1000.0)
            self._sink.write_eof()
            return
        for piece, pause in self._pieces(chunk):
            limit = self._toxics.get("limit_data")
            if limit is not None:
                room = limit["bytes"] - self._limit_sent
                if len(piece) >= room:
                    if room > 0:
                        self._sink.write(piece[:room])
                    self._limit_sent += max(room, 0)
                    self._sink.close()
                    self._stopped = True
                    return
                self._limit_sent += len(piece)
            self._sink.write(piece)
            if pause > 0:
                await asyncio.sleep(pause)

    def _pieces(self, chunk: bytes) -> list[tuple[bytes, float]]:
        """The chunk cut as the slicer and the bandwidth limit want it, each piece with the pause after it."""
        slicer = self._toxics.get("slicer")
        bandwidth = self._toxics.get("bandwidth")
        sizes: list[int] = []
        if slicer is not None:
            average, variation = int(slicer["average_size"]), int(slicer["size_variation"])
            left = len(chunk)
            while left > 0:
                size = max(1, average + (self._rng.randint(-variation, variation) if variation else 0))
                sizes.append(min(size, left))
                left -= sizes[-1]
        else:
            sizes = [len(chunk)]
        if bandwidth is not None:
            most = max(1, int(bandwidth["rate"] * 100))  # at most 100 ms worth of bytes in one write
            sizes = [min(most, size - at) for size in sizes for at in range(0, size, most)]
        out: list[tuple[bytes, float]] = []
        at = 0
        for size in sizes:
            pause = slicer["delay"] / 1e6 if slicer is not None else 0.0
            if bandwidth is not None:
                pause = max(pause, size / (bandwidth["rate"] * 1000.0))
            out.append((chunk[at : at + size], pause))
            at += size
        return out
