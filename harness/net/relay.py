"""Byte pumps shared by the load-balancer simulator and the kube-proxy model.

Both pieces forward TCP streams unchanged once they have chosen where a connection goes. Two forms:

- :func:`relay` copies between two pairs of asyncio streams. The kube-proxy model uses it: it is simple and its
  speed is not what a run measures.
- :class:`Splice` is the balancer's data path, every connection of every run goes through it, so it is written
  for speed: asyncio protocols whose callbacks write each chunk straight to the other socket, flow control by
  pausing the reading side when the writing side's buffer is full (no task, no queue, no copy per chunk), and
  idle tracking by one timestamp that the balancer's sweeper reads. Faults (``harness.net.faults``) hook into
  it as a :class:`~harness.net.faults.Pipe` per direction, only on connections that have any. The socket to
  the node is a :class:`RawTransport`, opened without a task (a new connection is what costs most).

Both pass half-closes on (an HTTP client may shut down its sending side and still read), close both sides when
either ends, and pass a reset on as a reset (SO_LINGER 0), so that what the client sees is what a peer behind a
cloud load balancer would make it see.
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from harness.net.faults import Pipe

__all__ = ["Counters", "RawTransport", "Splice", "half_close", "relay", "reset_transport"]

_CHUNK = 65536
_PENDING_LIMIT = 262144  # client bytes held while the upstream connection opens, before the client is paused
_LINGER_RST = struct.pack("ii", 1, 0)
_EOF_POLL = 0.005  # how often a half-close waits for a write buffer to drain
_HIGH_WATER = 65536  # RawTransport: pause the writer above this many buffered bytes
_LOW_WATER = 16384  # ... resume it at or below this
_CONNECT_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}
)
_monotonic = time.monotonic


@dataclass(slots=True)
class Counters:
    """Traffic through one piece (a node behind the balancer, a Service on a node), readable while running."""

    connections: int = 0
    active: int = 0
    bytes_up: int = 0  # client → server (a PROXY header the balancer sends counts too)
    bytes_down: int = 0  # server → client
    errors: int = 0  # connections that could not be forwarded (refused, no endpoint, connect timeout)
    idle_closed: int = 0
    resets: int = 0  # connections ended by a reset, received from either side or sent by us
    header_errors: int = 0  # connections given a faulty PROXY header on purpose (malformed, duplicated, delayed)
    drained: int = 0  # connections force-closed at the end of a node's draining timeout

    def to_json(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "active": self.active,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "errors": self.errors,
            "idle_closed": self.idle_closed,
            "resets": self.resets,
            "header_errors": self.header_errors,
            "drained": self.drained,
        }


def reset_transport(transport: asyncio.WriteTransport) -> None:
    """Close with an RST rather than a FIN (SO_LINGER 0), as a load balancer that drops a flow does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


def half_close(transport: asyncio.WriteTransport) -> None:
    """Send a FIN once what is buffered has gone (a half-close): the other direction stays open.

    Not ``transport.write_eof()``: uvloop (0.21 to 0.23 at least) frees memory twice when a transport is closed
    while the shutdown request of its ``write_eof`` is still pending, and a proxy closes right after a
    half-close all the time. A ``shutdown(SHUT_WR)`` of our own on the socket leaves uvloop nothing pending.
    """
    if isinstance(transport, RawTransport):
        transport.write_eof()
        return
    if transport.is_closing():
        return
    if transport.get_write_buffer_size():
        asyncio.get_running_loop().call_later(_EOF_POLL, half_close, transport)
        return
    raw = transport.get_extra_info("socket")
    if raw is None:
        if transport.can_write_eof():
            transport.write_eof()
        return
    sock = socket.socket(raw.family, raw.type, 0, raw.fileno())
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the peer is gone already: the read side will tell
    finally:
        sock.detach()


# --- the balancer's data path -------------------------------------------------------------------------------


class _Side(asyncio.Protocol):
    """One socket of a splice. What it reads goes to the other side's socket; it is also the
    :class:`~harness.net.faults.Sink` of the pipe that carries that direction when faults apply."""

    __slots__ = ("eof", "paused", "peer", "pipe", "splice", "transport", "upstream")

    def __init__(self, splice: Splice, upstream: bool) -> None:
        self.splice = splice
        self.upstream = upstream  # True: this is the client's socket, what it reads flows upstream
        self.transport: asyncio.Transport | None = None
        self.peer: _Side = self
        self.pipe: Pipe | None = None
        self.eof = False  # this side's reading has ended and the EOF was passed on
        self.paused = 0  # why reading is paused: a bit per reason

    # -- asyncio callbacks -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports do not derive from asyncio's
        self.transport = stream
        splice = self.splice
        if splice.closed:
            reset_transport(stream)
        elif self.upstream and splice.on_accept is not None:
            splice.on_accept(splice)

    def data_received(self, data: bytes) -> None:
        splice = self.splice
        splice.last = _monotonic()
        if self.upstream:
            splice.counters.bytes_up += len(data)
        else:
            splice.counters.bytes_down += len(data)
        dst = self.peer.transport
        if dst is None or splice.holding:  # only upstream: the node's socket is opening, or the header is late
            splice.pending.append(data)
            splice.pending_size += len(data)
            if splice.pending_size > _PENDING_LIMIT:
                self.pause_source(1)
            return
        pipe = self.pipe
        if pipe is not None and not pipe.passthrough:
            pipe.feed(data)
            return
        dst.write(data)

    def eof_received(self) -> bool:
        splice = self.splice
        if self.peer.transport is None or splice.holding:
            splice.pending_eof = True
            return True
        pipe = self.pipe
        if pipe is not None and not pipe.passthrough:
            pipe.feed_eof()
        else:
            self.write_eof()
        return True  # keep the socket open: the other direction may still carry data

    def connection_lost(self, exc: Exception | None) -> None:
        splice = self.splice
        if exc is not None:
            if not self.upstream and not splice.confirmed and getattr(exc, "errno", None) in _CONNECT_ERRNOS:
                splice.counters.errors += 1  # the node refused or never answered: not a reset of a connection
                splice.reset_sent = True
            splice.reset()
        elif not splice.closed:
            splice.close()
        splice.side_lost()

    def pause_writing(self) -> None:
        self.peer.pause_source(2)

    def resume_writing(self) -> None:
        self.peer.resume_source(2)

    # -- the Sink of this direction's pipe ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        dst = self.peer.transport
        if dst is not None and not dst.is_closing():
            dst.write(data)

    def write_eof(self) -> None:
        """Pass this side's EOF on to the other socket (a half-close); when both have passed theirs, close."""
        splice = self.splice
        dst = self.peer.transport
        if dst is None:
            return
        self.eof = True
        if self.peer.eof:
            splice.close()
        else:
            half_close(dst)

    def pause_source(self, reason: int = 4) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused |= reason

    def resume_source(self, reason: int = 4) -> None:
        was = self.paused
        self.paused &= ~reason
        if was and not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        self.splice.close()

    def reset(self) -> None:
        self.splice.reset()


class RawTransport(asyncio.Transport):
    """A transport over a socket whose connect is still under way, driven by ``add_reader``/``add_writer``.

    The balancer opens one per connection towards a node. Unlike ``loop.create_connection`` it needs no task,
    future or coroutine, which is a fifth of what a new connection costs: it is made at once, holds what is
    written until the handshake is done and then sends it in one piece (the PROXY header and the client's
    first bytes in one segment), and reports a refused connect as ``connection_lost(ConnectionRefusedError)``.
    It also half-closes with a plain ``shutdown(SHUT_WR)`` (see :func:`half_close`).
    """

    __slots__ = (
        "_buffer",
        "_closing",
        "_connecting",
        "_data_received",
        "_eof",
        "_fd",
        "_loop",
        "_paused",
        "_protocol",
        "_read_eof",
        "_reading",
        "_recv",
        "_send",
        "_sock",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: _socket.socket, protocol: asyncio.Protocol) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._recv, self._send, self._data_received = sock.recv, sock.send, protocol.data_received
        self._buffer = bytearray()
        self._connecting = True
        self._closing = False
        self._eof = False  # write_eof asked for
        self._paused = False  # the protocol was told to pause writing
        self._reading = True
        self._read_eof = False
        loop.add_reader(self._fd, self._read_ready)
        # no writer yet: on loopback the handshake is over by the next iteration, so sending is tried then,
        # after the other callbacks of this iteration (the client's first bytes join the header's segment)
        loop.call_soon(self._first_send)
        protocol.connection_made(self)

    # -- what the protocol and the balancer use --

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof or not data:
            return
        if self._buffer or self._connecting:
            self._buffer += data
        else:
            try:
                sent = self._send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fatal(exc)
                return
            if sent == len(data):
                return
            self._buffer += memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        if not self._paused and len(self._buffer) > _HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer and not self._connecting:
            self._shutdown()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        if self._reading and not self._closing:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing and not self._read_eof:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)

    def is_reading(self) -> bool:
        return self._reading

    def close(self) -> None:
        """Close once what is buffered has been sent."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer and not self._connecting:
            self._finish(None)

    def abort(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._closing = True
        self._finish(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name in ("peername", "sockname"):
            try:
                return self._sock.getpeername() if name == "peername" else self._sock.getsockname()
            except OSError:
                return default
        return default

    # -- the loop's callbacks --

    def _read_ready(self) -> None:
        try:
            data = self._recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if data:
            self._data_received(data)
            return
        self._read_eof = True
        self._stop_reading()
        if not self._protocol.eof_received():
            self.close()

    def _first_send(self) -> None:
        if self._sock.fileno() < 0:
            return
        if self._buffer:
            try:
                sent = self._sock.send(self._buffer)
            except (BlockingIOError, InterruptedError):  # still connecting: wait until writable
                self._loop.add_writer(self._fd, self._write_ready)
                return
            except OSError as exc:
                self._fatal(exc)
                return
            del self._buffer[:sent]
        self._connecting = False  # sent, so connected; or nothing to send: a later send finds out
        if self._buffer:
            self._loop.add_writer(self._fd, self._write_ready)
        elif self._closing:
            self._finish(None)
        elif self._eof:
            self._shutdown()

    def _write_ready(self) -> None:
        if self._connecting:
            err = self._sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
            if err:
                self._fatal(OSError(err, f"connect: {os.strerror(err)}"))
                return
            self._connecting = False
        if self._buffer:
            try:
                sent = self._sock.send(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal(exc)
                return
            del self._buffer[:sent]
            if self._buffer:
                return
        self._loop.remove_writer(self._fd)
        if self._paused and len(self._buffer) <= _LOW_WATER:
            self._paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._finish(None)
        elif self._eof:
            self._shutdown()

    # -- inside --

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):  # the peer is gone already: the read side will tell
            self._sock.shutdown(_socket.SHUT_WR)

    def _fatal(self, exc: Exception) -> None:
        self._closing = True
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        """Stop watching the socket before closing it (an fd number is reused at once), then report."""
        if self._sock.fileno() < 0:
            return
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._buffer.clear()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)


class Splice:
    """One balanced connection: the client's socket spliced to the one the balancer opened to a node.

    The owner creates it as the listening socket's protocol factory (``lambda: Splice(...).client``), learns of
    the accepted socket through ``on_accept``, opens the upstream socket with ``server`` as its protocol, then
    calls :meth:`open` with the bytes to send first (a PROXY header). ``on_done`` runs once both sockets are gone.
    """

    __slots__ = (
        "_lost",
        "client",
        "closed",
        "confirmed",
        "connect_task",
        "connecting",
        "counters",
        "holding",
        "last",
        "node",
        "on_accept",
        "on_done",
        "pending",
        "pending_eof",
        "pending_size",
        "reset_sent",
        "rolls",
        "server",
        "started",
    )

    def __init__(
        self,
        counters: Counters | None = None,
        on_accept: Callable[[Splice], None] | None = None,
        on_done: Callable[[Splice], None] | None = None,
    ) -> None:
        self.counters = counters if counters is not None else Counters()
        self.on_accept = on_accept
        self.on_done = on_done
        self.client = _Side(self, True)
        self.server = _Side(self, False)
        self.client.peer, self.server.peer = self.server, self.client
        self.node = ""
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.pending_eof = False
        self.holding = True  # client bytes wait in ``pending`` until open() (and while a late header is sent)
        self.closed = False
        self.reset_sent = False
        self.connect_task: asyncio.Task[None] | None = None
        self.rolls: dict[str, bool] = {}  # fault name -> whether its toxicity draw hit this connection
        self.started = self.last = _monotonic()
        self.connecting = False  # the owner is opening the upstream socket
        self.confirmed = False  # the upstream socket is known to be connected (not just connecting)
        self._lost = 0  # sockets gone

    def server_protocol(self) -> asyncio.Protocol:
        """The protocol factory for the upstream socket."""
        return self.server

    def peername(self) -> Any:
        return self.client.transport.get_extra_info("peername") if self.client.transport else None

    def sockname(self) -> Any:
        return self.client.transport.get_extra_info("sockname") if self.client.transport else None

    def open(self, first: bytes = b"", *, hold: bool = False) -> None:
        """The upstream socket is connected: send ``first``, then what the client sent meanwhile (unless
        ``hold``: then that waits for :meth:`release`)."""
        if not hold and self.pending and not self.pending_eof and self.client.pipe is None:
            # the header and what the client sent meanwhile in one write: one segment, one wake-up of the node
            pending, self.pending, self.pending_size = self.pending, [], 0
            self.send_first(first + b"".join(pending))
            self.counters.bytes_up -= sum(len(chunk) for chunk in pending)  # counted when they arrived
            self.client.resume_source(1)
        elif first:
            self.send_first(first)
        self.holding = hold
        if not hold:
            self.release()

    def send_first(self, data: bytes) -> None:
        """Bytes of our own to the node, ahead of the client's (a PROXY header, or a piece of one)."""
        transport = self.server.transport
        if transport is not None and not transport.is_closing():
            self.counters.bytes_up += len(data)
            transport.write(data)

    def release(self) -> None:
        """Send what the client sent while the upstream connection opened or the header was held back."""
        self.holding = False
        transport = self.server.transport
        if transport is None or self.closed:
            return
        if self.pending:
            pending, self.pending, self.pending_size = self.pending, [], 0
            pipe = self.client.pipe
            for chunk in pending:
                if pipe is not None and not pipe.passthrough:
                    pipe.feed(chunk)
                else:
                    transport.write(chunk)
            self.client.resume_source(1)
        if self.pending_eof:
            self.pending_eof = False
            self.client.eof_received()

    def close(self) -> None:
        """Close both sockets after their buffered bytes are sent (FIN)."""
        if self.closed:
            return
        self.closed = True
        self._stop()
        for side in (self.client, self.server):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()

    def reset(self) -> None:
        """Close both sockets at once with an RST, dropping what is buffered."""
        if not self.reset_sent:
            self.reset_sent = True
            self.counters.resets += 1
        self.closed = True
        self._stop()
        for side in (self.client, self.server):
            if side.transport is not None:
                reset_transport(side.transport)

    def _stop(self) -> None:
        if self.connect_task is not None and not self.connect_task.done():
            self.connect_task.cancel()
        for side in (self.client, self.server):
            if side.pipe is not None:
                side.pipe.stop()
        self.pending.clear()

    def side_lost(self) -> None:
        self._lost += 1
        self.maybe_finish()

    def maybe_finish(self) -> None:
        """Report the end of the connection, once, when no socket is left and none is being opened."""
        if self.connecting or self._lost < (2 if self.server.transport is not None else 1):
            return
        callback, self.on_done = self.on_done, None
        if callback is not None:
            callback(self)


# --- the kube-proxy model's relay ----------------------------------------------------------------------------


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
    half_close(writer.transport)


async def _watch_idle(activity: _Activity, idle_timeout: float) -> None:
    step = min(1.0, idle_timeout / 4)
    while True:
        await asyncio.sleep(step)
        if time.monotonic() - activity.last >= idle_timeout:
            return


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
                counters.resets += 1
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
                reset_transport(writer.transport)  # a failure or idle timeout: reset both sides
            else:
                writer.close()
        for writer in (c_writer, s_writer):
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
