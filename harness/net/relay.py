"""Byte pumps shared by the load-balancer simulator and the kube-proxy model.

Both pieces forward TCP streams unchanged once they have chosen where a connection goes. A relay copies both
directions, passes half-closes on (an HTTP client may shut down its sending side and still read), closes both
sides when either fails, and can enforce an idle timeout the way a cloud load balancer does: no byte in either
direction for that long and both connections are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

__all__ = ["Counters", "relay"]

_CHUNK = 65536


@dataclass(slots=True)
class Counters:
    """Traffic through one piece (a node, a service on a node), readable while running."""

    connections: int = 0
    active: int = 0
    bytes_up: int = 0  # client → server
    bytes_down: int = 0  # server → client
    errors: int = 0  # connections that could not be forwarded (refused, no endpoint, bad header)
    idle_closed: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "active": self.active,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "errors": self.errors,
            "idle_closed": self.idle_closed,
        }


class _Activity:
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = time.monotonic()


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    activity: _Activity,
    counters: Counters,
    upstream: bool,
) -> None:
    while True:
        data = await reader.read(_CHUNK)
        if not data:
            break
        activity.last = time.monotonic()
        if upstream:
            counters.bytes_up += len(data)
        else:
            counters.bytes_down += len(data)
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


async def _watch_idle(activity: _Activity, idle_timeout: float) -> None:
    step = min(1.0, idle_timeout / 4)
    while True:
        await asyncio.sleep(step)
        if time.monotonic() - activity.last >= idle_timeout:
            return


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    counters: Counters,
    *,
    idle_timeout: float | None = None,
    first_up: bytes = b"",
) -> None:
    """Copy bytes both ways until both directions have ended, either fails, or the connection is idle."""
    (c_reader, c_writer), (s_reader, s_writer) = client, server
    activity = _Activity()
    if first_up:
        s_writer.write(first_up)
        counters.bytes_up += len(first_up)
    up = asyncio.ensure_future(_pump(c_reader, s_writer, activity, counters, True))
    down = asyncio.ensure_future(_pump(s_reader, c_writer, activity, counters, False))
    pending: set[asyncio.Future[None]] = {up, down}
    watchdog = asyncio.ensure_future(_watch_idle(activity, idle_timeout)) if idle_timeout else None
    try:
        while pending:
            waiting = pending | ({watchdog} if watchdog else set())
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if watchdog in done:
                counters.idle_closed += 1
                break
            failed = False
            for finished in done:
                pending.discard(finished)
                if finished.exception() is not None:
                    failed = True
            if failed:
                break
    finally:
        for running in (up, down, watchdog):
            if running is not None and not running.done():
                running.cancel()
        for task in (up, down):
            with contextlib.suppress(BaseException):
                await task
        if watchdog is not None:
            with contextlib.suppress(BaseException):
                await watchdog
        for writer in (c_writer, s_writer):
            if pending:
                _abort(writer)  # a failure or idle timeout: reset both sides, as the balancer would
            else:
                writer.close()
        for writer in (c_writer, s_writer):
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
