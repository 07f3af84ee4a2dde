"""The load-balancer simulator on the host, in front of a real cluster's nodes, on an event loop of its own.

The kind backend is driven from synchronous code (pytest fixtures, the runner, the CLI), while the simulator
(``harness.net.lb``) is asyncio. Running it on its own loop in a daemon thread lets the backend start it, take a
node out of rotation, read its counters and stop it with plain calls, and ties its life to the cluster object's:
it stops with ``down()``, and with the process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from harness.errors import HarnessError, SetupError
from harness.net.lb import BalancerConfig, LoadBalancer

__all__ = ["BalancerThread"]

T = TypeVar("T")


class BalancerThread:
    def __init__(self, config: BalancerConfig) -> None:
        self.config = config
        self.lb = LoadBalancer(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise HarnessError("the load-balancer simulator is not running")
        return self._address

    def start(self, timeout: float = 10.0) -> tuple[str, int]:
        """Start listening; returns the (host, port) it listens on (``config.listen`` may ask for port 0)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.lb.start())
                self._address = self.lb.address
            except BaseException as exc:  # reported to start() below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.lb.close())
                loop.close()

        self._thread = threading.Thread(target=serve, name="sticky-lb", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise SetupError(f"the load-balancer simulator did not start listening within {timeout:g} s")
        if failure:
            host, port = self.config.listen
            raise SetupError(f"the load-balancer simulator cannot listen on {host}:{port}: {failure[0]}")
        return self.address

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the simulator's loop (its state belongs to that thread) and return its result."""
        if self._loop is None or not self._loop.is_running():
            raise HarnessError("the load-balancer simulator is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def set_enabled(self, node: str, enabled: bool) -> None:
        try:
            self.call(lambda: self.lb.set_enabled(node, enabled))
        except KeyError:
            known = ", ".join(t.name for t in self.config.targets)
            raise HarnessError(f"the load balancer has no node {node!r} (nodes: {known})") from None

    def snapshot(self) -> dict[str, Any]:
        return self.call(self.lb.snapshot)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        self._loop = self._thread = None
        self._address = None
