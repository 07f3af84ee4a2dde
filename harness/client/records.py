"""What a simulated client observed, in a form that stays small over long runs.

Every HTTP exchange of a session (handshake, long-poll GET, POST, WebSocket upgrade) and every acknowledged call
is seen as an `Exchange`; a session folds its exchanges into one `SessionRecord`, which is what the checks read.
Records are written as JSON lines so that several load-generator processes can each write their own file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = [
    "Exchange",
    "ExchangeKind",
    "Mode",
    "SessionRecord",
    "apply_aliases",
    "load_aliases",
    "read_run_sessions",
    "read_run_sessions_by_process",
    "read_sessions",
    "write_session",
]


class ExchangeKind(StrEnum):
    HANDSHAKE = "handshake"  # GET /socket.io/?EIO=4&transport=polling without sid (or the first WebSocket)
    POLL = "poll"  # long-poll GET with sid
    POST = "post"  # POST with sid
    UPGRADE = "upgrade"  # GET transport=websocket with sid (the 101, or its rejection)
    ACK = "ack"  # an emitted event acknowledged by the server; `pod` is the pod named in the ack
    RECONNECT = "reconnect"  # a new session started because the previous one failed


class Mode(StrEnum):
    """How a client talks to the server: the three shapes a Socket.IO client takes."""

    POLLING = "polling"  # long-polling only, never upgrades
    UPGRADE = "upgrade"  # polling handshake, then upgrade to WebSocket (the Socket.IO default)
    WEBSOCKET = "websocket"  # WebSocket from the first request, no polling


@dataclass(frozen=True, slots=True)
class Exchange:
    t: float  # wall-clock start, seconds since the epoch
    client: str
    source: str  # the client's source address
    sid: str | None
    kind: ExchangeKind
    status: int | None  # HTTP status (101 for an upgrade); None when no response arrived
    pod: str | None  # the x-pod response header, or the pod named in an ack
    latency: float  # seconds
    error: str | None = None  # why it failed, if it did ("Invalid session …", "connection refused", …)
    sticky_failure: bool = False  # the answer is one a server gives to a session it does not know


@dataclass(slots=True)
class SessionRecord:
    """One Engine.IO session (one sid) of one client, folded from its exchanges."""

    client: str
    source: str
    mode: Mode
    started: float
    ended: float = 0.0
    sid: str | None = None
    pods: list[str] = field(default_factory=list)  # distinct pods that answered, in order of first answer
    counts: dict[str, int] = field(default_factory=dict)  # exchanges per ExchangeKind value
    sticky_failures: int = 0
    first_failure: str | None = None  # the first sticky failure, as text
    connected: bool = False  # the Socket.IO connect completed
    upgraded: bool | None = None  # for Mode.UPGRADE: whether the upgrade to WebSocket happened
    error: str | None = None  # a failure that is not a sticky failure (refused, timeout, …)
    disrupted_by: str | None = None  # the scaling event that ended this session, if one did
    retry: int = 0  # broken sessions of this client just before this one: >0 means it is a reconnection
    stopped: bool = False  # ended early, cleanly, because the run was over

    def add(self, ex: Exchange) -> None:
        """Fold one exchange into the record."""
        self.counts[ex.kind.value] = self.counts.get(ex.kind.value, 0) + 1
        if ex.sid and not self.sid:
            self.sid = ex.sid
        if ex.pod and ex.pod not in self.pods:
            self.pods.append(ex.pod)
        if ex.sticky_failure:
            self.sticky_failures += 1
            if self.first_failure is None:
                self.first_failure = f"{ex.kind.value} {ex.status}: {ex.error or ''}".strip()
        if ex.kind is ExchangeKind.UPGRADE and ex.status == 101:
            self.upgraded = True

    @property
    def pod(self) -> str | None:
        """The pod that answered the handshake (the session's home)."""
        return self.pods[0] if self.pods else None

    @property
    def missed_upgrade(self) -> bool:
        """Meant to upgrade to WebSocket, but stayed on polling (python-engineio only logs a warning)."""
        return self.mode is Mode.UPGRADE and self.connected and not self.upgraded

    @property
    def violation(self) -> str | None:
        """Why this session breaks continuity, or None if it does not."""
        if len(self.pods) > 1:
            return f"served by {len(self.pods)} pods: {', '.join(self.pods)}"
        if self.sticky_failures:
            return f"wrong-pod answer: {self.first_failure}"
        if self.missed_upgrade:
            return "upgrade to WebSocket did not happen"
        return None

    def slimmed(self) -> SessionRecord:
        """This record as a judge keeps it when it must keep it (the scaling report reads each client's history
        around an event): no exchange counts or sid, names interned."""
        return replace(
            self,
            client=sys.intern(self.client),
            source=sys.intern(self.source),
            sid=None,
            pods=[sys.intern(p) for p in self.pods],
            counts={},
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        data = dict(data)
        data["mode"] = Mode(data["mode"])
        return cls(**data)


def write_session(fh: Any, record: SessionRecord) -> None:
    """Append one record as a JSON line to an open text file."""
    fh.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")


def read_sessions(paths: Iterable[Path]) -> Iterator[SessionRecord]:
    """Read the records of every file given, in file order."""
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield SessionRecord.from_json(json.loads(line))


def load_aliases(run_dir: Path) -> dict[str, str]:
    """Pod names by address (``host:port``), as the backend wrote them to ``pods.json``; empty if none."""
    try:
        data = json.loads((run_dir / "pods.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def apply_aliases(record: SessionRecord, aliases: dict[str, str]) -> SessionRecord:
    """Name the pods that were seen only by address (``@host:port``, from a proxy's ``x-upstream``)."""
    if aliases and any(p.startswith("@") for p in record.pods):
        named = [aliases.get(p[1:], p) if p.startswith("@") else p for p in record.pods]
        record.pods = list(dict.fromkeys(named))
    return record


def read_run_sessions(run_dir: Path) -> Iterator[SessionRecord]:
    """Every session record of a run directory, with pods seen by address named where the backend knows them."""
    for _, record in read_run_sessions_by_process(run_dir):
        yield record


def read_run_sessions_by_process(run_dir: Path) -> Iterator[tuple[str, SessionRecord]]:
    """As `read_run_sessions`, each record with the name of the load process that ran it (the ``<name>`` of its
    ``sessions-<name>.jsonl``)."""
    aliases = load_aliases(run_dir)
    for path in sorted(run_dir.glob("sessions-*.jsonl")):
        name = path.stem.removeprefix("sessions-")
        for record in read_sessions([path]):
            yield name, apply_aliases(record, aliases)
