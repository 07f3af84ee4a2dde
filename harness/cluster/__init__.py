"""Cluster backends behind one interface: ``local`` (processes on loopback addresses) and, later, ``kind``."""

from __future__ import annotations

from harness.cluster.base import Cluster, Pod

__all__ = ["Cluster", "Pod"]
