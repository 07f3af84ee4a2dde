"""Faults of the balancer from a timeline, on the local backend: a reset storm breaks live sessions, the verdict
names it (the event's reading, the sessions it disrupted) and does not blame the topology for it; and it does not
hide a topology that is broken anyway (the negative control still fails continuity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_local_swarm import swarm

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only")]

STORM = "6s fault reset_peer * 4s"


def test_a_reset_storm_is_named_and_not_blamed_on_a_sticky_topology(e2e_reports_dir: Path) -> None:
    summary = swarm("nginx-hash", e2e_reports_dir, 18, events=STORM, session_length=3.0, calls=2, users=30)
    (event,) = summary["events"]
    assert event["error"] is None and "the balancer holds reset_peer on every node" in event["observed"]
    assert 3.5 <= event["duration_s"] <= 8  # the record spans the storm, set to cleared
    # both sides: sessions were live when it struck, and it broke them
    assert event["live_at_event"] >= 20
    assert event["disrupted_sessions"] > 0 and event["broken"].get("reset", 0) > 0, event
    assert "fault reset_peer * 4s" in event["reading"] and "live sessions broken" in event["reading"]
    continuity = summary["checks"]["continuity"]
    assert continuity["measured"] == "pass"
    assert continuity["figures"]["disrupted_by_event"] == {"e1": event["disrupted_sessions"]}
    assert "disrupted by the timeline's events" in continuity["reason"]
    assert summary["verdict"] == "as expected", summary["checks"]


def test_negative_control_a_reset_storm_does_not_hide_a_topology_without_affinity(e2e_reports_dir: Path) -> None:
    summary = swarm("no-affinity", e2e_reports_dir, 18, events=STORM, session_length=3.0, calls=2, users=30)
    (event,) = summary["events"]
    assert event["error"] is None and event["disrupted_sessions"] > 0
    continuity = summary["checks"]["continuity"]
    assert continuity["measured"] == "fail"  # wrong-pod answers are never the storm's
    assert continuity["figures"]["by_reason"]["wrong_pod_answer"] + continuity["figures"]["by_reason"]["multi_pod"] > 0
    assert summary["verdict"] == "as expected"  # no-affinity is expected to fail continuity
