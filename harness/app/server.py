"""The reference Socket.IO app: a python-socketio server that says which pod answered every HTTP response.

Continuity can only be judged if each answer names the process that gave it, so an ASGI middleware adds
``x-pod: <pod name>`` to everything that leaves the app: polling responses, python-engineio's own 400s, the 101 of a
WebSocket upgrade. Under uvicorn a WebSocket that the app closes before accepting becomes a bare 403 with no
headers; that is how python-engineio rejects an upgrade for a session it does not know (a wrong-pod upgrade). The
middleware turns that close into a real HTTP 400 through the ASGI ``websocket.http.response`` extension, so the
rejection carries ``x-pod`` and a body that says why.

Events: ``whoami`` acks the pod name, ``echo`` acks its arguments unchanged, ``peer`` acks the TCP peer address
of the session's first request, ``peers`` acks how many requests this pod received from each peer address (the
harness uses it to check which source address the network delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import socketio
import uvicorn

__all__ = ["DEFAULT_PING_INTERVAL", "DEFAULT_PING_TIMEOUT", "PodApp", "build_app", "serve"]

log = logging.getLogger(__name__)

DEFAULT_PING_INTERVAL = 25.0  # python-engineio's and Node engine.io's defaults
DEFAULT_PING_TIMEOUT = 20.0
SOCKETIO_PATH = "socket.io"
HTTP_RESPONSE_EXTENSION = "websocket.http.response"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class PodApp:
    """The ASGI app of one pod: python-socketio wrapped in the middleware that tags every response."""

    def __init__(self, pod_name: str, sio: Any) -> None:
        self.pod_name = pod_name
        self.sio = sio  # socketio.AsyncServer
        self.peers: Counter[str] = Counter()  # requests received per TCP peer address
        self._inner = socketio.ASGIApp(sio, socketio_path=SOCKETIO_PATH)
        self._pod_header = (b"x-pod", pod_name.encode("latin-1", errors="replace"))
        self._warned_no_extension = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind in ("http", "websocket"):
            client = scope.get("client")
            if client:
                self.peers[str(client[0])] += 1
        if kind == "http":
            await self._serve_http(scope, receive, send)
        elif kind == "websocket":
            await self._inner(scope, receive, self._tag_websocket(scope, send))
        else:
            await self._inner(scope, receive, send)

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request, tagged with the pod; if the client goes away before the answer starts (a client
        aborting its long-poll as it leaves), stop waiting for it. python-engineio would hold the poll for a ping
        interval and a ping timeout and then answer no one; it now ends the session, as Node's engine.io does
        ("poll connection closed prematurely"), and a pod that is told to stop does not wait for such polls."""
        task = asyncio.current_task()
        watcher: asyncio.Future[None] | None = None
        answering = False  # the response has started: a disconnect from now on changes nothing
        gone = False

        async def watch_for_disconnect() -> None:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not answering and task is not None:
                gone = True
                task.cancel()

        async def receive_request() -> Message:
            nonlocal watcher
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body") and watcher is None:
                watcher = asyncio.ensure_future(watch_for_disconnect())  # the app reads nothing after the body
            return message

        async def tagged(message: Message) -> None:
            nonlocal answering
            if message["type"] == "http.response.start":
                answering = True
                message = {**message, "headers": [*message.get("headers", []), self._pod_header]}
            await send(message)

        try:
            await self._inner(scope, receive_request, tagged)
        except asyncio.CancelledError:
            if not gone:
                raise
        finally:
            if watcher is not None:
                watcher.cancel()
            if gone and task is not None:
                task.uncancel()

    def _tag_websocket(self, scope: Scope, send: Send) -> Send:
        can_respond = HTTP_RESPONSE_EXTENSION in (scope.get("extensions") or {})
        state = {"accepted": False, "responded": False}

        async def tagged(message: Message) -> None:
            kind = message["type"]
            if state["responded"]:
                return  # the handshake was answered with an HTTP response: nothing else may follow it
            if kind == "websocket.accept":
                state["accepted"] = True
                message = {**message, "headers": [*message.get("headers", []), self._pod_header]}
            elif kind == "websocket.close" and not state["accepted"]:
                if can_respond:
                    state["responded"] = True
                    await self._reject(send, 400, _close_reason_text(message.get("reason")))
                    return
                if not self._warned_no_extension:
                    self._warned_no_extension = True
                    log.warning(
                        "%s: the server offers no %s extension: rejected WebSocket handshakes go out as bare 403s",
                        self.pod_name,
                        HTTP_RESPONSE_EXTENSION,
                    )
            elif kind in ("http.response.start", "http.response.body") and not state["accepted"]:
                # python-engineio's 404 for a path it does not serve is written for HTTP scopes.
                kind = "websocket." + kind
                message = {**message, "type": kind}
                if kind == "websocket.http.response.start":
                    message["headers"] = [*message.get("headers", []), self._pod_header]
            await send(message)

        return tagged

    async def _reject(self, send: Send, status: int, text: str) -> None:
        body = text.encode("utf-8")
        headers = [
            self._pod_header,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})

    async def close_sessions(self, timeout: float = 2.0) -> None:
        """Send every Engine.IO session the CLOSE packet without waiting for clients to fetch it: a pending
        long-poll returns it at once, a WebSocket gets it before uvicorn closes the connection."""
        eio = self.sio.eio
        sockets = list(eio.sockets.values())
        if not sockets:
            return
        log.info("%s: closing %d sessions", self.pod_name, len(sockets))
        tasks = [asyncio.ensure_future(s.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)) for s in sockets]
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _close_reason_text(reason: object) -> str:
    """python-engineio closes with its error as JSON (``"Invalid session X"``); the HTTP body gets the plain text."""
    if not reason:
        return "WebSocket handshake rejected"
    text = reason.decode("utf-8", errors="replace") if isinstance(reason, bytes) else str(reason)
    with contextlib.suppress(ValueError):
        decoded = json.loads(text)
        if isinstance(decoded, str):
            return decoded
    return text


def build_app(
    pod_name: str,
    *,
    ping_interval: float = DEFAULT_PING_INTERVAL,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
    cookie: str | None = None,
) -> PodApp:
    """The ASGI app of a pod named ``pod_name``; ``cookie`` names the sid cookie set on the handshake (off if None)."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        cookie=cookie,
        cors_allowed_origins="*",  # proxies may rewrite Host; the harness is no browser
        logger=logging.getLogger(f"{__name__}.socketio"),  # our loggers: the libraries add handlers to their own
        engineio_logger=logging.getLogger(f"{__name__}.engineio"),
    )
    app = PodApp(pod_name, sio)

    async def whoami(sid: str, *_: Any) -> str:
        return pod_name

    async def echo(sid: str, *args: Any) -> Any:
        return args[0] if len(args) == 1 else args

    async def peer(sid: str, *_: Any) -> str | None:
        environ = sio.get_environ(sid) or {}
        client = environ.get("asgi.scope", {}).get("client")
        return str(client[0]) if client else None

    async def peers(sid: str, *_: Any) -> dict[str, int]:
        return dict(app.peers)

    async def connect(sid: str, environ: dict[str, Any], *_: Any) -> None:
        log.debug("%s: connect %s from %s", pod_name, sid, environ.get("asgi.scope", {}).get("client"))

    for handler in (whoami, echo, peer, peers, connect):
        sio.on(handler.__name__, handler)
    return app


class _Server(uvicorn.Server):
    """uvicorn, but on SIGTERM / SIGINT the Engine.IO sessions are closed first: a long-poll would otherwise hold
    the shutdown for up to a ping interval."""

    def __init__(self, config: uvicorn.Config, app: PodApp) -> None:
        super().__init__(config)
        self.pod_app = app

    async def shutdown(self, sockets: Any = None) -> None:
        closing = asyncio.ensure_future(self.pod_app.close_sessions())
        await super().shutdown(sockets)
        await closing


def serve(app: PodApp, host: str, port: int, *, graceful_timeout: int = 5) -> None:
    """Run ``app`` under uvicorn until SIGTERM or SIGINT; returns after a graceful shutdown."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets",
        access_log=False,
        log_level="warning",
        proxy_headers=False,  # the TCP peer is the fact the harness needs, not X-Forwarded-For
        timeout_graceful_shutdown=graceful_timeout,
        lifespan="on",
    )
    _Server(config, app).run()
