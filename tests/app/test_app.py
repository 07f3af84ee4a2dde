"""The reference app over real sockets: every answer names its pod, including the wrong-pod answers.

Two pods, A and B, on different ports: a request of A's session sent to B is exactly what a broken load-balancer
chain produces. python-engineio answers a poll for an unknown sid itself (400, the JSON string
``"Invalid session <sid>"``); an upgrade for an unknown sid would be uvicorn's bare 403, and the app turns it into
a 400 with a body through the ``websocket.http.response`` extension.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio
import websocket

from harness.app.server import _close_reason_text, build_app
from tests.app.conftest import Pod, app_pod

pytestmark = pytest.mark.timeout(60)


def handshake(pod: Pod, session: requests.Session) -> tuple[requests.Response, str]:
    response = session.get(f"{pod.url}/socket.io/?EIO=4&transport=polling", timeout=5)
    assert response.status_code == 200, response.text
    assert response.text.startswith("0{")
    return response, json.loads(response.text[1:])["sid"]


@pytest.fixture
def web() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@contextlib.contextmanager
def connected(pod: Pod, transports: list[str]) -> Iterator[Any]:
    """A plain python-socketio client (no harness code), its HTTP session closed afterwards."""
    with requests.Session() as session:
        sio = socketio.Client(reconnection=False, handle_sigint=False, http_session=session)
        sio.connect(pod.url, transports=transports, wait_timeout=5)
        try:
            yield sio
        finally:
            sio.disconnect()  # on WebSocket: a polling disconnect waits for the pending long-poll


def test_handshake_names_its_pod(pod_a: Pod, web: requests.Session) -> None:
    response, sid = handshake(pod_a, web)
    assert response.headers["x-pod"] == "A"
    assert sid
    assert "set-cookie" not in response.headers  # SIO_COOKIE is off unless set


def test_sid_cookie_when_configured(pod_b: Pod, web: requests.Session) -> None:
    response, sid = handshake(pod_b, web)
    assert response.headers["x-pod"] == "B"
    assert web.cookies.get("io") == sid


def test_poll_of_another_pods_session(pod_a: Pod, pod_b: Pod, web: requests.Session) -> None:
    _, sid = handshake(pod_a, web)
    response = web.get(f"{pod_b.url}/socket.io/?EIO=4&transport=polling&sid={sid}", timeout=5)
    assert response.status_code == 400
    assert response.headers["x-pod"] == "B"
    assert response.text == f'"Invalid session {sid}"'  # python-engineio: its message as a JSON string


def test_post_to_another_pods_session(pod_a: Pod, pod_b: Pod, web: requests.Session) -> None:
    _, sid = handshake(pod_a, web)
    response = web.post(f"{pod_b.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data="40", timeout=5)
    assert response.status_code == 400
    assert response.headers["x-pod"] == "B"
    assert response.text == f'"Invalid session {sid}"'


def test_upgrade_on_another_pod_is_400_with_pod_and_body(pod_a: Pod, pod_b: Pod, web: requests.Session) -> None:
    _, sid = handshake(pod_a, web)
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(f"{pod_b.ws_url}/socket.io/?EIO=4&transport=websocket&sid={sid}", timeout=5)
    rejection = caught.value
    assert rejection.status_code == 400  # not uvicorn's bare 403
    assert rejection.resp_headers is not None
    assert rejection.resp_headers["x-pod"] == "B"
    assert rejection.resp_headers["content-type"].startswith("text/plain")
    assert rejection.resp_body == f"Invalid session {sid}".encode()


def test_upgrade_on_own_pod_is_101_with_pod(pod_a: Pod, web: requests.Session) -> None:
    _, sid = handshake(pod_a, web)
    ws = websocket.create_connection(f"{pod_a.ws_url}/socket.io/?EIO=4&transport=websocket&sid={sid}", timeout=5)
    try:
        assert ws.getstatus() == 101
        assert (ws.getheaders() or {})["x-pod"] == "A"
        ws.send("2probe")
        assert ws.recv() == "3probe"
    finally:
        ws.close()


def test_websocket_only_handshake_is_101_with_pod(pod_a: Pod) -> None:
    ws = websocket.create_connection(f"{pod_a.ws_url}/socket.io/?EIO=4&transport=websocket", timeout=5)
    try:
        assert (ws.getheaders() or {})["x-pod"] == "A"
        opened = ws.recv()
        assert isinstance(opened, str) and opened.startswith("0{")
    finally:
        ws.close()


def test_raw_upgrade_response_headers(pod_a: Pod, web: requests.Session) -> None:
    """The 101 as it is on the wire, read from a plain socket."""
    _, sid = handshake(pod_a, web)
    request = (
        f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\n"
        f"Host: {pod_a.host}:{pod_a.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((pod_a.host, pod_a.port), timeout=5) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    assert headers["x-pod"] == "A"


def test_not_found_carries_pod(pod_a: Pod, web: requests.Session) -> None:
    response = web.get(f"{pod_a.url}/nothing-here", timeout=5)
    assert response.status_code == 404
    assert response.headers["x-pod"] == "A"


@pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"]])
def test_whoami_and_echo(pod_a: Pod, transports: list[str]) -> None:
    with connected(pod_a, transports) as sio:
        assert sio.call("whoami", timeout=5) == "A"
        payload = {"n": 1, "text": "héllo", "list": [1, 2, None]}
        assert sio.call("echo", payload, timeout=5) == payload
        assert sio.call("echo", "just a string", timeout=5) == "just a string"
        assert sio.call("peer", timeout=5) == "127.0.0.1"
        peers = sio.call("peers", timeout=5)
        assert peers["127.0.0.1"] >= 1


def test_close_reason_text() -> None:
    assert _close_reason_text('"Invalid session abc"') == "Invalid session abc"
    assert _close_reason_text("plain words") == "plain words"
    assert _close_reason_text(None) == "WebSocket handshake rejected"


def test_sigterm_ends_pending_long_poll_and_exits(tmp_path: Path, web: requests.Session) -> None:
    """A pod told to stop closes its sessions first: a pending long-poll returns the CLOSE packet at once instead
    of holding the shutdown for a ping interval."""
    poller_ip = "127.0.0.9"  # the long-poll's own source address, to see it arrive in the pod's `peers`
    with app_pod("C", tmp_path, PING_INTERVAL="30", PING_TIMEOUT="30") as pod:
        _, sid = handshake(pod, web)
        assert web.post(f"{pod.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data="40", timeout=5).ok
        first = web.get(f"{pod.url}/socket.io/?EIO=4&transport=polling&sid={sid}", timeout=5)
        assert first.text.startswith("40")  # the namespace connect; the next GET waits for a ping (30 s)
        with socket.create_connection((pod.host, pod.port), timeout=30, source_address=(poller_ip, 0)) as sock:
            sock.sendall(
                f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: {pod.host}\r\n\r\n".encode()
            )
            with connected(pod, ["websocket"]) as sio:
                while sio.call("peers", timeout=5).get(poller_ip, 0) < 1:
                    pass  # until the pod has the GET
            pod.process.send_signal(signal.SIGTERM)
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read().decode()
            assert response.status == 200
            assert response.headers["x-pod"] == "C"
            assert "1" in body.split("\x1e")  # Engine.IO CLOSE packet
            response.close()
        assert pod.process.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done


def asgi_upgrade(extensions: dict[str, Any]) -> list[dict[str, Any]]:
    """What the app sends for a wrong-pod upgrade, called as an ASGI app in this process."""
    app = build_app("D")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "websocket",
        "path": "/socket.io/",
        "query_string": b"EIO=4&transport=websocket&sid=nope",
        "headers": [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")],
        "client": ("127.0.0.1", 40000),
        "extensions": extensions,
    }
    asyncio.run(app(scope, receive, send))
    return sent


def test_rejection_through_the_http_response_extension() -> None:
    start, body = asgi_upgrade({"websocket.http.response": {}})
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 400
    assert (b"x-pod", b"D") in start["headers"]
    assert body == {"type": "websocket.http.response.body", "body": b"Invalid session nope"}


def test_rejection_without_the_extension_falls_back_to_close(caplog: pytest.LogCaptureFixture) -> None:
    [close] = asgi_upgrade({})
    assert close["type"] == "websocket.close"
    assert "no websocket.http.response extension" in caplog.text
