"""The client's transports over real sockets: source binding, and what is recorded of each answer.

Servers that answer with fixed bytes stand in for servers this machine does not run (Node's engine.io, python-
engineio behind uvicorn without the app's rejection); the app pods show the real thing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
import websocket

from harness.client.records import Exchange, ExchangeKind
from harness.client.session import SimulatedClient
from harness.client.transport import ExchangeRecorder, check_source, open_http_session, websocket_options
from harness.errors import SetupError
from tests.app.conftest import HOST, Pod, free_port

pytestmark = pytest.mark.timeout(60)

UNBINDABLE = "203.0.113.9"  # TEST-NET-3: no interface of a test machine has it
SOURCE = "127.55.66.21"


class CannedServer:
    """Answers every connection with the same bytes, after reading the request head; records each peer."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.peers: list[str] = []
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            with conn:
                self.peers.append(peer[0])
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                conn.sendall(self.answer)

    @contextlib.contextmanager
    def running(self) -> Iterator[CannedServer]:
        self._thread.start()
        try:
            yield self
        finally:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._thread.join(5)


def http_answer(status: str, body: bytes, content_type: str = "text/plain") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
def recorded() -> Iterator[tuple[ExchangeRecorder, list[Exchange]]]:
    exchanges: list[Exchange] = []
    recorder = ExchangeRecorder("t1", SOURCE, exchanges.append)
    yield recorder, exchanges
    recorder.close()


def test_unbindable_source_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match=rf"cannot bind client source address {UNBINDABLE}: .*127\.x\.y\.z"):
        check_source(UNBINDABLE)
    with pytest.raises(SetupError, match=UNBINDABLE):
        SimulatedClient("c1", UNBINDABLE, "http://127.0.0.1:1")


def test_source_that_is_no_address_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match="not an IP address"):
        check_source("client-7")


def test_any_loopback_address_binds() -> None:
    check_source("127.201.13.77")


@pytest.mark.parametrize(
    ("status", "body", "content_type", "sticky"),
    [
        ("400 Bad Request", b'{"code":1,"message":"Session ID unknown"}', "application/json", True),  # Node
        ("400 BAD REQUEST", b'"Invalid session abc"', "text/plain", True),  # python-engineio
        ("400 Bad Request", b'"Invalid transport"', "text/plain", False),
        ("200 OK", b"ok", "text/plain", False),
    ],
)
def test_http_answer_recorded_from_bound_source(
    recorded: tuple[ExchangeRecorder, list[Exchange]], status: str, body: bytes, content_type: str, sticky: bool
) -> None:
    recorder, exchanges = recorded
    server = CannedServer(http_answer(status, body, content_type))
    with server.running(), open_http_session(recorder) as http:
        response = http.get(f"http://{HOST}:{server.port}/socket.io/?EIO=4&transport=polling&sid=abc", timeout=5)
    assert server.peers == [SOURCE]
    [exchange] = exchanges
    assert exchange.kind is ExchangeKind.POLL
    assert exchange.sid == "abc"
    assert exchange.status == response.status_code
    assert exchange.source == SOURCE
    assert exchange.sticky_failure is sticky
    assert (exchange.error is None) is (response.status_code == 200)


def test_http_failure_recorded(recorded: tuple[ExchangeRecorder, list[Exchange]]) -> None:
    recorder, exchanges = recorded
    port = free_port()  # nothing listens there
    with open_http_session(recorder) as http, pytest.raises(OSError):
        http.post(f"http://{HOST}:{port}/socket.io/?EIO=4&transport=polling&sid=abc", data="40", timeout=5)
    [exchange] = exchanges
    assert exchange.kind is ExchangeKind.POST
    assert exchange.status is None
    assert exchange.error is not None and "refused" in exchange.error.lower()


@pytest.mark.parametrize(
    ("answer", "status", "sticky"),
    [
        (http_answer("400 Bad Request", b"Session ID unknown", "text/html"), 400, True),  # Node engine.io 6
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403, True),  # uvicorn, python-engineio
        (http_answer("404 Not Found", b"no such path"), 404, False),
    ],
)
def test_rejected_upgrade_recorded(
    recorded: tuple[ExchangeRecorder, list[Exchange]], answer: bytes, status: int, sticky: bool
) -> None:
    recorder, exchanges = recorded
    server = CannedServer(answer)
    with server.running(), pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(
            f"ws://{HOST}:{server.port}/socket.io/?EIO=4&transport=websocket&sid=abc",
            timeout=5,
            **websocket_options(recorder),
        )
    assert server.peers == [SOURCE]
    [exchange] = exchanges
    assert (exchange.kind, exchange.status, exchange.sid) == (ExchangeKind.UPGRADE, status, "abc")
    assert exchange.sticky_failure is sticky
    assert exchange.error


def test_upgrade_and_websocket_handshake_recorded(
    recorded: tuple[ExchangeRecorder, list[Exchange]], pod_a: Pod, pod_b: Pod
) -> None:
    recorder, exchanges = recorded
    options = websocket_options(recorder)
    ws = websocket.create_connection(f"{pod_a.ws_url}/socket.io/?EIO=4&transport=websocket", timeout=5, **options)
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"{pod_b.ws_url}/socket.io/?EIO=4&transport=websocket&sid=x1", timeout=5, **options)
    first, second = exchanges
    assert (first.kind, first.status, first.pod, first.sid) == (ExchangeKind.HANDSHAKE, 101, "A", None)
    assert (second.kind, second.status, second.pod, second.sid) == (ExchangeKind.UPGRADE, 400, "B", "x1")
    assert second.sticky_failure
    assert second.error is not None and "Invalid session x1" in second.error


def test_abort_and_close_end_every_socket(recorded: tuple[ExchangeRecorder, list[Exchange]], pod_a: Pod) -> None:
    recorder, _ = recorded
    sock = recorder.open_socket(pod_a.host, pod_a.port, 5)
    assert sock.getsockname()[0] == SOURCE
    recorder.abort()
    assert sock.recv(1) == b""  # shut down: a reader waiting on it returns
    recorder.close()
    assert sock.fileno() == -1
