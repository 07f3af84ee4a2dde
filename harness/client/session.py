"""One simulated Socket.IO client: sessions run one after another, each recorded request by request.

A session is one Engine.IO sid: a fresh python-socketio sync ``Client`` (no automatic reconnection: whether and
when to start the next session is the caller's decision, as it is a scenario's), its own HTTP session and
sockets, all bound to the client's source address (`harness.client.transport`). It connects with the transports
of its `Mode`, makes acknowledged calls (``whoami`` names the pod that answered, ``echo`` checks the round trip),
and disconnects without waiting on a pending long-poll. Every exchange is folded into a `SessionRecord`.

python-socketio reports trouble in ways a harness cannot use as they are: a failed upgrade is a logged warning and
the session stays on polling, a lost session makes ``call`` wait its whole timeout, a polling ``disconnect`` can
wait for the pending GET. So connect, calls and disconnect are driven here with bounded waits, woken by the
client's events and by the exchanges themselves; nothing but `SetupError` escapes `SimulatedClient.run_session`.

A session is short by default (connect, a few calls, disconnect) or lives ``length`` seconds: connected and idle
between its calls, long-polling or holding its WebSocket with Engine.IO pings, as real users are; that is what a
scaling event must be measured against. A session that breaks is followed by the next one after the delay a
socket.io-client waits before it reconnects (`Backoff`).

Works under gevent's monkey-patching (Locust runs it so): only ``threading`` and ``time`` are used, at call time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
import socketio

from harness.client.records import Exchange, ExchangeKind, Mode, SessionRecord
from harness.client.transport import ExchangeRecorder, check_source, open_http_session, websocket_options
from harness.errors import SetupError

__all__ = ["TRANSPORTS", "Backoff", "SimulatedClient"]

log = logging.getLogger(__name__)

TRANSPORTS: dict[Mode, list[str]] = {
    Mode.POLLING: ["polling"],
    Mode.UPGRADE: ["polling", "websocket"],
    Mode.WEBSOCKET: ["websocket"],
}
UPGRADE_WAIT = 1.0  # how long a session waits for its upgrade to WebSocket before its first call
CLOSE_GRACE = 2.0  # how long the client's loops get to end by themselves before their sockets are cut
IDLE_TICK = 0.5  # how often an idle session looks whether it has been asked to stop (unless `wake` tells it)


class Backoff:
    """socket.io-client's reconnection delay (its defaults: 1 s growing to 5 s, randomisation 0.5).

    Attempt n (from 0) waits ``min(first * 2**n, most)``, moved up or down by up to ``jitter`` of itself, as the
    client's ``Backoff`` does; `reset` after a session that worked."""

    def __init__(
        self, first: float = 1.0, most: float = 5.0, jitter: float = 0.5, rng: random.Random | None = None
    ) -> None:
        self.first = first
        self.most = most
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        delay = self.first * 2**self.attempts
        self.attempts += 1
        if self.jitter:
            deviation = self.rng.random() * self.jitter * delay
            delay = delay - deviation if int(self.rng.random() * 10) & 1 == 0 else delay + deviation
        return float(min(delay, self.most))

    def reset(self) -> None:
        self.attempts = 0


class _LibraryLog(logging.LoggerAdapter[logging.Logger]):
    """python-socketio's and python-engineio's own logging, with warnings lowered to DEBUG: what they warn about
    (a failed upgrade, a 400 on a poll) is what the records capture; errors stay errors."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(level if level >= logging.ERROR else logging.DEBUG, msg, *args, **kwargs)


_SIO_LOG = _LibraryLog(logging.getLogger(f"{__name__}.socketio"))
_EIO_LOG = _LibraryLog(logging.getLogger(f"{__name__}.engineio"))


class SimulatedClient:
    """A client with its own source address that runs Socket.IO sessions against ``url``, one at a time.

    ``sink`` receives every finished `SessionRecord`, ``on_exchange`` every `Exchange` as it happens (from the
    client's I/O threads). ``timeout`` bounds every wait: a request, the Socket.IO connect, each acknowledgement.
    ``whoami=False`` is for apps that have no ``whoami`` event (a user's own app): the calls are ``echo`` calls
    then, and which pod answered is known only from ``x-pod`` headers a proxy adds, or from wrong-pod answers.
    Like a browser, the client keeps the cookies it is given from one session to the next (a proxy's affinity
    cookie, for one); ``keep_cookies=False`` starts every session without any.
    """

    def __init__(
        self,
        client_id: str,
        source: str,
        url: str,
        *,
        sink: Callable[[SessionRecord], None] | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
        timeout: float = 10.0,
        whoami: bool = True,
        keep_cookies: bool = True,
    ) -> None:
        check_source(source)
        self.client_id = client_id
        self.source = source
        self.url = url
        self.sink = sink
        self.on_exchange = on_exchange
        self.timeout = timeout
        self.whoami = whoami
        self.cookies: requests.cookies.RequestsCookieJar | None = (
            requests.cookies.RequestsCookieJar() if keep_cookies else None
        )
        self._session: _Session | None = None

    def wake(self) -> None:
        """Make the running session look at ``should_stop`` now (a caller that wakes it when it should stop can
        give `run_session` a long ``idle_tick``: ten thousand idle sessions ticking twice a second cost a core's
        tenth)."""
        session = self._session
        if session is not None:
            session.changed.set()

    def run_session(
        self,
        mode: Mode,
        *,
        calls: int = 3,
        call_interval: float = 0.2,
        length: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
        retry: int = 0,
        idle_tick: float = IDLE_TICK,
    ) -> SessionRecord:
        """Run one session (connect, ``calls`` whoami calls and an echo, disconnect) and return its record.

        With ``length`` > 0 the session stays connected that long, its calls spread over it; ``should_stop`` is
        asked while it idles, at least every ``idle_tick`` seconds and whenever `wake` is called, and ends it
        early, cleanly (the run is over). ``retry`` is how many broken sessions
        came just before this one (it is a reconnection). Also given to ``sink``. A session that fails (refused,
        wrong pod, no ack, lost while idle) is a finished record too, with its ``error``; only a `SetupError` (the
        machine cannot run the client) is raised."""
        record = SessionRecord(client=self.client_id, source=self.source, mode=mode, started=time.time(), retry=retry)
        session = _Session(self, record)
        self._session = session
        try:
            if length > 0:
                session.run_long(calls, length, should_stop or (lambda: False), idle_tick)
            else:
                session.run(calls, call_interval)
        except SetupError:
            session.close()
            raise
        except Exception as exc:
            log.debug("%s: session failed", self.client_id, exc_info=True)
            record.error = record.error or f"{type(exc).__name__}: {exc}"
        finally:
            self._session = None
        session.close()
        record.ended = time.time()
        if self.sink is not None:
            self.sink(record)
        return record


class _Session:
    """The state of one running session: its record, its recorder and sockets, its socketio.Client."""

    def __init__(self, client: SimulatedClient, record: SessionRecord) -> None:
        self.client = client
        self.record = record
        self.lock = threading.Lock()
        self.changed = threading.Event()  # something a wait may be waiting for happened
        self.disconnected = False
        self.connect_error: str | None = None
        self.upgrade_failed = False
        self.transport_failed = False  # a poll or POST failed: python-engineio has ended one of its loops
        self.transport_error: str | None = None  # what the first failed poll or POST saw
        self.disconnect_reason: str | None = None
        self.recorder = ExchangeRecorder(client.client_id, client.source, self._add)
        self.http = open_http_session(self.recorder)
        if client.cookies is not None:
            self.http.cookies = client.cookies  # the WebSocket handshake sends them too (python-engineio)
        self.closed = False
        self.sio: Any = socketio.Client(
            reconnection=False,
            handle_sigint=False,
            logger=_SIO_LOG,
            engineio_logger=_EIO_LOG,
            http_session=self.http,
            websocket_extra_options=websocket_options(self.recorder, client.cookies),
            request_timeout=client.timeout,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)

    # events (from the client's threads)

    def _add(self, exchange: Exchange) -> None:
        with self.lock:
            self.record.add(exchange)
            if exchange.kind is ExchangeKind.UPGRADE and exchange.status != 101:
                self.upgrade_failed = True
        if exchange.error is not None and exchange.kind in (ExchangeKind.POLL, ExchangeKind.POST):
            self.transport_error = self.transport_error or f"{exchange.kind.value} {exchange.status}: {exchange.error}"
            self.transport_failed = True
            self.changed.set()
        if self.client.on_exchange is not None:
            try:
                self.client.on_exchange(exchange)
            except Exception:
                log.exception("%s: on_exchange failed", self.client.client_id)

    def _on_connect(self, *_: Any) -> None:
        self.changed.set()

    def _on_connect_error(self, data: Any = None, *_: Any) -> None:
        self.connect_error = str(data) if data is not None else "refused"
        self.changed.set()

    def _on_disconnect(self, *args: Any) -> None:
        if args and self.disconnect_reason is None:
            self.disconnect_reason = str(args[0])
        self.disconnected = True
        self.changed.set()

    # waiting

    def _broken(self) -> bool:
        """The Engine.IO connection is gone, or half gone: python-engineio ends its write loop on a failed POST
        (or its read loop on a failed poll) but keeps the session 'connected' until the other loop ends too."""
        return self.disconnected or self.transport_failed or self.sio.eio.state != "connected"

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` or the session breaks; True if ``done()``."""
        deadline = time.monotonic() + timeout
        while True:
            self.changed.clear()
            if done():
                return True
            if self._broken():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.wait(remaining)

    # the session

    def run(self, calls: int, call_interval: float) -> None:
        if not self._connect():
            return
        sid = self.sio.eio.sid
        for n in range(calls + 1):
            if 0 < n < calls:
                time.sleep(call_interval)
            if not self._call_number(n, calls, sid):
                return

    def _call_number(self, n: int, calls: int, sid: str | None) -> bool:
        """Call ``n`` of a session's ``calls``: whoami (an echo for apps without it), then, at ``n == calls``,
        the closing echo."""
        if n < calls and self.client.whoami:
            return self._call("whoami", None, sid)
        payload = f"{self.client.client_id}/{sid}/{'echo' if n == calls else n}"
        return self._call("echo", payload, sid, expect=payload)

    def run_long(self, calls: int, length: float, should_stop: Callable[[], bool], tick: float = IDLE_TICK) -> None:
        """A session that lives ``length`` seconds: its calls (and the closing echo) spread evenly over it, idle in
        between; ends early, without an error, when ``should_stop()``."""
        if not self._connect():
            return
        begin = time.monotonic()
        sid = self.record.sid
        for n in range(calls + 1):
            if not self._idle_until(begin + length * (n + 1) / (calls + 2), should_stop, tick):
                return
            if not self._call_number(n, calls, sid):
                return
        self._idle_until(begin + length, should_stop, tick)

    def _idle_until(self, deadline: float, should_stop: Callable[[], bool], tick: float) -> bool:
        """Stay connected until ``deadline``: True then; False when the session broke (its error recorded) or
        was asked to stop."""
        while True:
            self.changed.clear()
            if self._broken():
                self.record.error = self.record.error or self._why_broken()
                return False
            if should_stop():
                self.record.stopped = True
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self.changed.wait(min(remaining, tick))

    def _why_broken(self) -> str:
        if self.transport_error is not None:
            return f"connection lost while idle: {self.transport_error}"
        reason = f" ({self.disconnect_reason})" if self.disconnect_reason else ""
        return f"connection lost while idle: disconnected{reason}"

    def _connect(self) -> bool:
        """Connect and wait for the Socket.IO connect (and the upgrade); False (error recorded) if it failed."""
        record = self.record
        timeout = self.client.timeout
        try:
            self.sio.connect(
                self.client.url,
                transports=TRANSPORTS[record.mode],
                namespaces=["/"],
                wait=False,
                retry=False,
            )
        except socketio.exceptions.ConnectionError as exc:
            record.error = f"connect failed: {exc}"
            return False
        with self.lock:
            record.sid = record.sid or self.sio.eio.sid
        if not self._wait(lambda: "/" in self.sio.namespaces, timeout):
            record.error = self._why_not_connected(timeout)
            return False
        record.connected = True
        if record.mode is Mode.UPGRADE:
            self._wait_for_upgrade()
        return True

    def _why_not_connected(self, timeout: float) -> str:
        if self.connect_error is not None:
            return f"Socket.IO connect refused: {self.connect_error}"
        if self._broken():
            return "connection lost before the Socket.IO connect completed"
        return f"Socket.IO connect not acknowledged within {timeout:g}s"

    def _wait_for_upgrade(self) -> None:
        eio = self.sio.eio
        if "websocket" in (eio.upgrades or []) and not self.upgrade_failed and eio.current_transport != "websocket":
            deadline = time.monotonic() + UPGRADE_WAIT
            while eio.current_transport != "websocket" and not self.upgrade_failed and time.monotonic() < deadline:
                time.sleep(0.02)
        self.record.upgraded = eio.current_transport == "websocket"

    def _call(self, event: str, data: Any, sid: str | None, *, expect: Any = None) -> bool:
        """Emit ``event`` and wait for its acknowledgement, recorded as an ACK exchange; True if it came (right)."""
        answers: list[tuple[Any, ...]] = []

        def acked(*args: Any) -> None:
            answers.append(args)
            self.changed.set()

        timeout = self.client.timeout
        t = time.time()
        start = time.perf_counter()
        error: str | None = None
        try:
            self.sio.emit(event, data, callback=acked)
        except socketio.exceptions.SocketIOError as exc:
            error = f"{event}: not sent ({exc or type(exc).__name__})"
        else:
            if not self._wait(lambda: bool(answers), timeout):
                error = (
                    f"{event}: connection lost before the ack" if self._broken() else f"{event}: no ack in {timeout:g}s"
                )
        latency = time.perf_counter() - start
        value = (answers[0][0] if len(answers[0]) == 1 else list(answers[0])) if answers else None
        if error is None and expect is not None and value != expect:
            error = f"{event}: sent {expect!r}, got back {value!r}"
        pod = value if event == "whoami" and isinstance(value, str) and error is None else None
        self._add(
            Exchange(
                t=t,
                client=self.client.client_id,
                source=self.client.source,
                sid=sid,
                kind=ExchangeKind.ACK,
                status=200 if answers else None,  # an ack arrived (ACK exchanges have no HTTP status of their own)
                pod=pod,
                latency=latency,
                error=error,
            )
        )
        if error is not None:
            self.record.error = self.record.error or error
            return False
        return True

    def close(self) -> None:
        """Disconnect (the server gets the CLOSE packet), then cut what is left and close every socket."""
        if self.closed:
            return
        self.closed = True
        self.recorder.closing = True
        eio = self.sio.eio
        write_loop, read_loop = eio.write_loop_task, eio.read_loop_task
        # Engine.IO's disconnect, not Socket.IO's: python-socketio's queues a namespace DISCONNECT first, and
        # python-engineio's write loop, woken by it, can see the state change and end before it sends the CLOSE.
        # The disconnect then waits for the pending long-poll, which a python-engineio server does not end on
        # CLOSE (it waits a ping interval and a ping timeout; a wrong pod holds it anyway): so disconnect in the
        # background, let the write loop send the CLOSE, then cut the long-poll, as a browser aborts its request.
        closer = threading.Thread(target=self._disconnect, name=f"{self.client.client_id}-close", daemon=True)
        grace = min(CLOSE_GRACE, self.client.timeout)
        closer.start()
        _join([write_loop], grace)
        self.recorder.abort()
        if not _join([closer, read_loop, write_loop], grace):
            eio.queue.put(None)  # a write loop waiting on the queue that python-engineio emptied on disconnect
            if not _join([closer, read_loop, write_loop], grace):
                log.debug("%s: the client's loops did not end", self.client.client_id)
        self.recorder.finished = True
        self.http.close()
        self.recorder.close()

    def _disconnect(self) -> None:
        try:
            self.sio.eio.disconnect()
        except Exception:
            log.debug("%s: disconnect failed", self.client.client_id, exc_info=True)


def _join(tasks: list[Any], timeout: float) -> bool:
    """Join the client's background threads within ``timeout`` in all; True if all ended."""
    deadline = time.monotonic() + timeout
    for task in tasks:
        if task is not None:
            task.join(max(0.0, deadline - time.monotonic()))
    return not any(task is not None and task.is_alive() for task in tasks)
