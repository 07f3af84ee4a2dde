"""Instrumented Socket.IO clients: each with its own source address, each request of each session recorded with
the pod that answered it, so that continuity can be judged (see `harness.checks`)."""

from __future__ import annotations

from harness.client.records import Exchange, ExchangeKind, Mode, SessionRecord, read_sessions, write_session
from harness.client.session import SimulatedClient
from harness.client.sticky import classify

__all__ = [
    "Exchange",
    "ExchangeKind",
    "Mode",
    "SessionRecord",
    "SimulatedClient",
    "classify",
    "read_sessions",
    "write_session",
]
