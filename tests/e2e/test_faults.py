"""Faults named for what they are, on the local backend: a reset storm from a timeline breaks live sessions, the
verdict names it (the event's reading, the sessions it disrupted) and does not blame the topology for it, nor does
it hide a topology that is broken anyway (the negative control still fails continuity); an app pod crashing
mid-session is named, with the sessions it broke; a balancer idle timeout below the ping interval is a finding,
and the same quiet sessions behind a longer one are not cut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.topology import Topology, load_topology
from tests.e2e.test_local_swarm import swarm

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only")]

STORM = "6s fault reset_peer * 4s"


def test_a_reset_storm_is_named_and_not_blamed_on_a_sticky_topology(e2e_reports_dir: Path) -> None:
    summary = swarm("nginx-hash", e2e_reports_dir, 14, events=STORM, session_length=3.0, calls=2, users=30)
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
    summary = swarm("no-affinity", e2e_reports_dir, 14, events=STORM, session_length=3.0, calls=2, users=30)
    (event,) = summary["events"]
    assert event["error"] is None and event["disrupted_sessions"] > 0
    continuity = summary["checks"]["continuity"]
    assert continuity["measured"] == "fail"  # wrong-pod answers are never the storm's
    assert continuity["figures"]["by_reason"]["wrong_pod_answer"] + continuity["figures"]["by_reason"]["multi_pod"] > 0
    assert summary["verdict"] == "as expected"  # no-affinity is expected to fail continuity


def _kill_app_pod_when_it_serves(name: str, after: float, started: float, killed: list[int]) -> None:
    """As the kernel's OOM killer would: SIGKILL the run's pod ``name`` ``after`` seconds into its life."""
    import os
    import signal
    import time

    from harness.cluster.local.processes import find_run_processes

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid, run_id in find_run_processes().items():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"POD_NAME={name}".encode() in environ and run_id[:15] >= time.strftime(
                "%Y%m%d-%H%M%S", time.localtime(started)
            ):
                time.sleep(after)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.1)


def test_an_app_pod_crashing_mid_session_is_named_and_its_sessions_are_the_crashs(e2e_reports_dir: Path) -> None:
    import threading
    import time

    killed: list[int] = []
    killer = threading.Thread(target=_kill_app_pod_when_it_serves, args=("app-1", 6.0, time.time() - 1, killed))
    killer.start()
    summary = swarm("nginx-hash", e2e_reports_dir, 13, session_length=4.0, calls=2, users=30)
    killer.join()
    assert killed  # it was alive, serving, when it was killed
    (crash,) = summary["unplanned"]
    assert crash["what"] == "app-1" and crash["exit_status"] == -9 and crash["blame"] == "system under test"
    assert crash["disrupted_sessions"] > 0  # its live sessions broke, and are the crash's
    assert "app-1" in crash["reading"] and "nobody asked it to" in crash["reading"]
    continuity = summary["checks"]["continuity"]
    assert continuity["figures"]["disrupted_by_event"].get(crash["id"]) == crash["disrupted_sessions"]
    assert summary["verdict"] == "differs from expected" and summary["exit_code"] == 1  # a crash is a finding


def _idle_topology(idle_timeout: float) -> Topology:
    topology = load_topology("nginx-hash")
    lb = topology.load_balancer.model_copy(update={"idle_timeout": idle_timeout})
    app = topology.app.model_copy(update={"ping_interval": 8.0, "ping_timeout": 5.0})
    return topology.model_copy(update={"load_balancer": lb, "app": app, "name": f"nginx-hash-idle-{idle_timeout:g}"})


def test_a_balancer_idle_timeout_below_the_ping_interval_is_named(e2e_reports_dir: Path) -> None:
    # sessions of 10 s with one call: quiet for seconds between it and the pings every 8 s
    summary = swarm(_idle_topology(3.0), e2e_reports_dir, 14, session_length=10.0, calls=1, users=20)
    (finding,) = summary["findings"]
    assert finding["kind"] == "balancer_idle_timeout" and finding["idle_closed"] > 0
    assert finding["idle_timeout_s"] == 3.0 and finding["ping_interval_s"] == 8.0
    assert finding["sessions_broken"] > 0  # the sessions it cut
    assert "idle timeout (3 s) is shorter than the Engine.IO ping interval (8 s)" in finding["reading"]
    assert any(note.startswith("FINDING: the balancer's idle timeout") for note in summary["notes"])
    assert summary["verdict"] == "differs from expected"


def test_the_same_quiet_sessions_behind_a_longer_idle_timeout_are_not_cut(e2e_reports_dir: Path) -> None:
    summary = swarm(_idle_topology(60.0), e2e_reports_dir, 14, session_length=10.0, calls=1, users=20)
    assert summary["findings"] == []
    assert summary["session_length_s"] == 10.0  # the same quiet sessions: they could have been cut
    network = json.loads((Path(summary["report_dir"]) / "network.json").read_text(encoding="utf-8"))
    assert sum(n["idle_closed"] for n in network["lb"]["nodes"].values()) == 0
    assert summary["checks"]["continuity"]["measured"] == "pass"


def _proxy_topology(balancer: str, tier: str) -> Topology:
    topology = load_topology("nginx-hash")
    lb = topology.load_balancer.model_copy(update={"proxy_protocol": balancer})
    assert topology.tier is not None
    tier_model = topology.tier.model_copy(update={"proxy_protocol": tier})
    return topology.model_copy(update={"load_balancer": lb, "tier": tier_model, "name": f"nginx-hash-pp-{tier}"})


@pytest.mark.parametrize(
    ("balancer", "tier", "reading"),
    [
        ("v1", "none", "the balancer sends PROXY v1 headers the tier does not read"),
        ("none", "expect", "the tier expects a PROXY header the balancer does not send"),
    ],
    ids=["balancer-sends-tier-ignores", "tier-expects-balancer-omits"],
)
def test_a_proxy_header_mismatch_is_named_whichever_way_round(
    e2e_reports_dir: Path, balancer: str, tier: str, reading: str
) -> None:
    summary = swarm(_proxy_topology(balancer, tier), e2e_reports_dir, 5, users=10)
    (finding,) = summary["findings"]
    assert finding["kind"] == "proxy_mismatch" and reading in finding["reading"]
    if tier == "expect":
        assert 'nginx logged: "' in finding["reading"] and "broken header" in finding["reading"]
    assert summary["sessions"] > 0 and summary["checks"]["continuity"]["figures"]["errors"] == summary["sessions"]
    assert summary["verdict"] == "differs from expected" and summary["exit_code"] == 1


def test_a_matching_proxy_header_is_no_finding(e2e_reports_dir: Path) -> None:
    summary = swarm(_proxy_topology("v1", "expect"), e2e_reports_dir, 5, users=10)
    assert summary["findings"] == [] and summary["checks"]["continuity"]["measured"] == "pass"
