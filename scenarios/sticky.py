"""Sticky-session swarm: polling, polling-then-upgrade and WebSocket-only Socket.IO clients.

Each user is one client with its own source address, running Socket.IO sessions one after another; every request
of every session is checked against the pod that answered it (see harness.swarm). Run it

  against a topology it brings up and judges:   locust -f scenarios/sticky.py --headless -u 30 -t 60s --topology seed
  against a cluster from `harness up --name X`:  locust -f scenarios/sticky.py --attach X
  against any Engine.IO server:                  locust -f scenarios/sticky.py --host http://127.0.0.1:8000

Sessions are short (connect, --calls acknowledged calls, disconnect) unless --session-length keeps each one
connected that long. Between sessions a client thinks 0.05-0.3 s; after a broken session it waits as a
socket.io-client does before reconnecting (1 s growing to 5 s, randomisation 0.5).

With --topology or --attach the Locust process exits 0 when the measured verdict equals the topology's expected
verdict and 1 when it differs; the summary is written to reports/<run-id>/summary.json.
"""

from __future__ import annotations

from locust import task

from harness.client.records import Mode
from harness.swarm import StickyUser


class PollingClient(StickyUser):
    """Long-polling only: two TCP connections at once (GET and POST), the case that needs stickiness most."""

    mode = Mode.POLLING

    @task
    def session(self) -> None:
        self.run_session()


class UpgradingClient(StickyUser):
    """The Socket.IO default: a polling handshake, then an upgrade to WebSocket that must reach the same pod."""

    mode = Mode.UPGRADE

    @task
    def session(self) -> None:
        self.run_session()


class WebSocketClient(StickyUser):
    """WebSocket from the first request: one connection per session, so it survives without stickiness."""

    mode = Mode.WEBSOCKET

    @task
    def session(self) -> None:
        self.run_session()
