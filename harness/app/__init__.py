"""The reference Socket.IO app that every app pod of the harness runs (``python -m harness.app``).

It tags every HTTP response with the pod that gave it, so that the clients can tell, request by request, whether a
session stayed on one pod; see `harness.app.server`.
"""

from __future__ import annotations

from harness.app.server import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, PodApp, build_app, serve

__all__ = ["DEFAULT_PING_INTERVAL", "DEFAULT_PING_TIMEOUT", "PodApp", "build_app", "serve"]
