"""Real app pods (the helper of tests/app) and a TCP splitter that breaks stickiness on purpose.

The splitter is the smallest broken load balancer: it sends TCP connection number ``i`` wherever ``route(i)``
says (or closes it at once when ``route(i)`` is None). Routing the first connection to pod A and every later one to
pod B is what a per-connection round robin in front of two pods does to a polling client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.app.conftest import HOST, Pod, app_pod

Route = Callable[[int], tuple[str, int] | None]


class Splitter:
    """A TCP relay on 127.0.0.1 that picks an upstream per connection."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.connections = 0
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept_loop, name="splitter-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> Splitter:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._listener.close()
        self._accepting.join(5)
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        for sock in sockets:
            sock.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            target = self.route(index)
            if target is None:
                downstream.close()
                continue
            try:
                upstream = socket.create_connection(target, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            for sock in (downstream, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [downstream, upstream]
                for src, dst in ((downstream, upstream), (upstream, downstream)):
                    thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                    self._threads.append(thread)
                    thread.start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="package")
def pod_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    with app_pod("A", tmp_path_factory.mktemp("pods")) as pod:
        yield pod


@pytest.fixture(scope="package")
def pod_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    with app_pod("B", tmp_path_factory.mktemp("pods")) as pod:
        yield pod
