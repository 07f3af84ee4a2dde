"""The network side of one simulated client: every connection leaves from the client's own source address, and
every HTTP exchange of a session is seen and recorded.

python-socketio's sync client talks HTTP through a ``requests.Session`` (``http_session=``) and WebSocket
through websocket-client (``websocket.create_connection(url, class_=..., **websocket_extra_options)``). Both are
bent here rather than patched:

- HTTP: a transport adapter whose urllib3 pools bind every connection to ``(source, 0)`` and whose failures are
  recorded, and a response hook that turns each response into an `Exchange` (handshake, poll or POST, from the
  method and the query string; pod from ``x-pod``; wrong-pod answers recognised by `harness.client.sticky`).
- WebSocket: websocket-client has no source-address option, but it accepts a pre-made socket (``socket=``) and a
  ``class_`` to instantiate, and passes unknown options to both. `BoundWebSocket` opens the TCP connection
  itself, bound to the source address, hands it to websocket-client and records the handshake: the 101 with its
  ``x-pod``, or the status, headers and body of a ``WebSocketBadStatusException``.

Every socket a session opens is tracked so that the session can cut a long-poll that would otherwise hold it,
and close everything it opened when it ends.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

import requests
import websocket
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connectionpool import HTTPConnectionPool

from harness.client.records import Exchange, ExchangeKind
from harness.client.sticky import classify
from harness.errors import SetupError

__all__ = [
    "BoundWebSocket",
    "ExchangeRecorder",
    "SourceBoundAdapter",
    "check_source",
    "open_http_session",
    "websocket_options",
]

log = logging.getLogger(__name__)

RECORDER_OPTION = "harness_recorder"  # the websocket-client option that carries the recorder to BoundWebSocket
COOKIES_OPTION = "harness_cookies"  # ... and the cookie jar the handshake's Set-Cookie goes into
_SHOWN = 200  # characters of an error body kept in an exchange


def check_source(source: str) -> None:
    """Raise SetupError unless a TCP socket can be bound to ``source`` on this machine."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(source).version == 6 else socket.AF_INET
    except ValueError:
        raise SetupError(f"client source address {source!r} is not an IP address") from None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((source, 0))
        except OSError as exc:
            raise SetupError(_bind_failure(source, exc)) from exc


def _bind_failure(source: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot bind client source address {source}: no interface of this machine has it (EADDRNOTAVAIL); "
            f"use a 127.x.y.z address (all of 127.0.0.0/8 is local on Linux) or add it, e.g. "
            f"`sudo ip addr add {source}/32 dev lo`"
        )
    return f"cannot bind client source address {source}: {exc.strerror or exc}"


def _describe(exc: BaseException) -> str:
    """A one-line account of a failed request, with the innermost OS error when there is one."""
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, OSError) and inner.strerror:
            return f"{type(exc).__name__}: {inner.strerror}"
        inner = inner.__cause__ or inner.__context__
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}


def _handshake_sid(body: bytes) -> str | None:
    """The sid of an Engine.IO open packet (``0{"sid":…}``), possibly followed by more packets."""
    if not body.startswith(b"0{"):
        return None
    try:
        data = json.loads(body[1:].split(b"\x1e", 1)[0])
    except ValueError:
        return None
    sid = data.get("sid") if isinstance(data, dict) else None
    return sid if isinstance(sid, str) else None


class ExchangeRecorder:
    """Turns what one session's transports see into `Exchange` objects, and owns every socket they open."""

    def __init__(self, client: str, source: str, emit: Callable[[Exchange], None]) -> None:
        self.client = client
        self.source = source
        self._emit = emit
        self._lock = threading.Lock()
        self._connections: list[Any] = []  # urllib3 connections (their .sock appears once connected)
        self._sockets: list[socket.socket] = []  # WebSocket connections
        self.closing = False  # the session is ending: failures from now on are of its own making, not evidence
        self.finished = False  # the session's record is complete: nothing more is recorded

    # recording

    def record(
        self,
        kind: ExchangeKind,
        *,
        t: float,
        latency: float,
        sid: str | None,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        error: str | None = None,
    ) -> None:
        if self.finished:
            return
        if self.closing and not _succeeded(status):
            return  # a request cut, or answered for a session already closed, by the session's own ending
        sticky = classify(status, body, kind) if status is not None else None
        if sticky is not None:
            error = sticky
        elif error is None and status is not None and not _succeeded(status):
            snippet = body[:_SHOWN].decode("utf-8", errors="replace").strip()
            error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        pod = _pod(headers)
        exchange = Exchange(
            t=t,
            client=self.client,
            source=self.source,
            sid=sid,
            kind=kind,
            status=status,
            pod=pod or None,
            latency=latency,
            error=error,
            sticky_failure=sticky is not None,
        )
        try:
            self._emit(exchange)
        except Exception:
            log.exception("%s: recording an exchange failed", self.client)

    def on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests' response hook: every HTTP answer of the session."""
        request = response.request
        query = _query(request.url or "")
        sid = query.get("sid")
        kind = _http_kind(request.method or "GET", sid)
        body = response.content or b""
        if kind is ExchangeKind.HANDSHAKE and response.status_code == 200:
            sid = _handshake_sid(body)
        latency = response.elapsed.total_seconds()
        self.record(
            kind,
            t=time.time() - latency,
            latency=latency,
            sid=sid,
            status=response.status_code,
            headers=response.headers,
            body=body,
        )

    def on_request_failure(
        self, request: requests.PreparedRequest, exc: BaseException, t: float, latency: float
    ) -> None:
        sid = _query(request.url or "").get("sid")
        self.record(
            _http_kind(request.method or "GET", sid), t=t, latency=latency, sid=sid, status=None, error=_describe(exc)
        )

    # sockets

    def track_connection(self, connection: Any) -> None:
        with self._lock:
            self._connections.append(connection)

    def open_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to ``host:port`` from the source address, tracked until `close`."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout, source_address=(self.source, 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise OSError(exc.errno, _bind_failure(self.source, exc)) from exc
            raise
        self.track_socket(sock)
        return sock

    def track_socket(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _all_sockets(self) -> list[socket.socket]:
        with self._lock:
            found = [conn.sock for conn in self._connections if getattr(conn, "sock", None) is not None]
            return found + list(self._sockets)

    def abort(self) -> None:
        """Shut every open connection down, so that whatever waits on one (a long-poll) returns now."""
        for sock in self._all_sockets():
            with contextlib.suppress(OSError):  # not connected, or already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close every socket the session opened."""
        with self._lock:
            connections, sockets = list(self._connections), list(self._sockets)
            self._connections.clear()
            self._sockets.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()
        for sock in sockets:
            sock.close()


def _succeeded(status: int | None) -> bool:
    return status is not None and (200 <= status < 300 or status == 101)


def _http_kind(method: str, sid: str | None) -> ExchangeKind:
    if method.upper() == "POST":
        return ExchangeKind.POST
    return ExchangeKind.POLL if sid else ExchangeKind.HANDSHAKE


class _TrackingPoolManager(PoolManager):
    """urllib3 pools whose every new connection is handed to the recorder (so that it can be cut and closed)."""

    def __init__(self, recorder: ExchangeRecorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        new_conn = pool._new_conn
        recorder = self.recorder

        def tracked_new_conn() -> Any:
            conn = new_conn()
            recorder.track_connection(conn)
            return conn

        pool._new_conn = tracked_new_conn  # type: ignore[method-assign]
        return pool


class SourceBoundAdapter(HTTPAdapter):
    """An HTTP adapter whose connections all leave from the recorder's source address, with failures recorded."""

    def __init__(self, recorder: ExchangeRecorder, *, pool_maxsize: int = 4) -> None:
        self.recorder = recorder
        super().__init__(pool_connections=2, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _TrackingPoolManager(
            self.recorder,
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            source_address=(self.recorder.source, 0),
            **pool_kwargs,
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        t = time.time()
        start = time.perf_counter()
        try:
            return super().send(request, *args, **kwargs)
        except requests.RequestException as exc:
            self.recorder.on_request_failure(request, exc, t, time.perf_counter() - start)
            raise


def open_http_session(recorder: ExchangeRecorder) -> requests.Session:
    """A requests session for python-socketio's ``http_session=``: bound to the source, every response recorded."""
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would hide the source address
    adapter = SourceBoundAdapter(recorder)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(recorder.on_response)
    return session


def _wrap_tls(sock: socket.socket, host: str, sslopt: Mapping[str, Any]) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=sslopt.get("ca_certs"))
    if sslopt.get("certfile"):
        context.load_cert_chain(sslopt["certfile"], sslopt.get("keyfile"))
    if sslopt.get("cert_reqs") == ssl.CERT_NONE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname=host)


class BoundWebSocket(websocket.WebSocket):
    """A websocket-client connection opened from the recorder's source address, its handshake recorded.

    python-engineio passes ``websocket_extra_options`` to ``websocket.create_connection``, which passes them on
    to this class and to `connect`; `websocket_options` puts the recorder among them, and the client's cookie
    jar: a browser keeps the cookies of a WebSocket handshake's answer (RFC 6455, 4.1), and a proxy that pins
    clients by cookie may set its cookie there when a session starts on WebSocket.
    """

    def connect(self, url: str, **options: Any) -> None:
        recorder: ExchangeRecorder = options.pop(RECORDER_OPTION)
        cookies: requests.cookies.RequestsCookieJar | None = options.pop(COOKIES_OPTION, None)
        options.pop("socket", None)
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        sid = _query(url).get("sid")
        kind = ExchangeKind.UPGRADE if sid else ExchangeKind.HANDSHAKE
        t = time.time()
        start = time.perf_counter()
        sock: socket.socket | None = None
        try:
            sock = recorder.open_socket(host, port, self.sock_opt.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for opt in self.sock_opt.sockopt or ():
                sock.setsockopt(*opt)
            if secure:
                sock = _wrap_tls(sock, host, self.sock_opt.sslopt or {})
                recorder.track_socket(sock)
            super().connect(url, socket=sock, **options)  # type: ignore[no-untyped-call]
        except websocket.WebSocketBadStatusException as exc:
            recorder.record(
                kind,
                t=t,
                latency=time.perf_counter() - start,
                sid=sid,
                status=exc.status_code,
                headers=exc.resp_headers or {},
                body=exc.resp_body or b"",
            )
            raise
        except Exception as exc:
            if sock is not None:
                sock.close()
            recorder.record(kind, t=t, latency=time.perf_counter() - start, sid=sid, status=None, error=_describe(exc))
            raise
        headers = self.getheaders() or {}
        recorder.record(
            kind, t=t, latency=time.perf_counter() - start, sid=sid, status=self.getstatus(), headers=headers
        )
        if cookies is not None and headers.get("set-cookie"):
            keep_cookies(cookies, str(headers["set-cookie"]), host)


def keep_cookies(jar: requests.cookies.RequestsCookieJar, set_cookie: str, host: str) -> None:
    """Put the cookies of a handshake's ``Set-Cookie`` into ``jar`` (websocket-client joins several with "; ")."""
    parsed: SimpleCookie = SimpleCookie()
    try:
        parsed.load(set_cookie)
    except CookieError:
        log.debug("unreadable Set-Cookie %r from %s", set_cookie, host)
        return
    for name, morsel in parsed.items():
        jar.set(name, morsel.value, domain=host, path=morsel["path"] or "/")


def websocket_options(
    recorder: ExchangeRecorder, cookies: requests.cookies.RequestsCookieJar | None = None
) -> dict[str, Any]:
    """python-socketio's ``websocket_extra_options`` for a client whose WebSockets go through `BoundWebSocket`."""
    options: dict[str, Any] = {"class_": BoundWebSocket, RECORDER_OPTION: recorder}
    if cookies is not None:
        options[COOKIES_OPTION] = cookies
    return options


def _pod(headers: Any) -> str | None:
    """Which pod answered: the app's ``x-pod``, else the address a proxy tier names in ``x-upstream`` (the last
    one when the proxy tried several), as ``@host:port`` for the harness to map to a pod name."""
    if headers is None:
        return None
    pod = headers.get("x-pod")
    if pod:
        return str(pod)
    upstream = headers.get("x-upstream")
    if upstream:
        last = str(upstream).split(",")[-1].strip()
        if last and last != "-":
            return f"@{last}"
    return None
