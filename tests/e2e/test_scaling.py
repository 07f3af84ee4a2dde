"""Scaling under live sessions, on the local backend: one event per run, so nothing but the event itself is measured.

Sessions are long (``--session-length``): a polling client long-polls and a WebSocket client idles with pings
through the event, as real users do. Each test asserts both sides of what it measures: what broke, and that it
could have broken (sessions were live at the event); that new pods got nothing, and that they could have (alive,
answering a handshake sent straight to them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checks.scaling import assign_disruptions
from harness.client.records import SessionRecord, read_run_sessions
from harness.events import read_event_records
from harness.topology import load_topology
from tests.e2e.test_local_swarm import swarm

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only")]

LENGTH = 6.0  # seconds each session lives: several sessions per client before and after the event


def sessions_of(summary: dict[str, Any]) -> list[SessionRecord]:
    """The run's sessions, with the event that broke each (the judge marks them in memory, as here)."""
    run_dir = Path(summary["report_dir"])
    sessions = list(read_run_sessions(run_dir))
    assign_disruptions(sessions, read_event_records(run_dir))
    return sessions


def the_event(summary: dict[str, Any]) -> dict[str, Any]:
    (event,) = summary["events"]
    assert event["error"] is None, event
    assert summary["unplanned"] == [] and summary["harness_failure"] is None  # every pod lived to the end
    return event


def alive_at_the_end(summary: dict[str, Any], pods: list[str]) -> None:
    assert set(pods) <= set(summary["pods"]), summary["pods"]
    assert not set(pods) & set(summary["removed_pods"])


def test_nginx_hash_3_to_6_moves_about_the_minimum_and_moved_polling_sessions_break_and_recover(
    e2e_reports_dir: Path,
) -> None:
    summary = swarm(
        "nginx-hash", e2e_reports_dir, 32, events="10s scale app 6", session_length=LENGTH, calls=2, users=45
    )
    event = the_event(summary)
    new = ["app-3", "app-4", "app-5"]
    assert event["added"] == new and "answered handshakes through the entry" in event["observed"]
    alive_at_the_end(summary, new)
    n, minimum, moved = event["clients_compared"], event["minimum_remap"], event["clients_remapped"]
    assert n >= 40 and minimum == -(-n // 2)  # |6-3|/6 of the clients
    assert 0.6 * minimum <= moved <= minimum + max(2, n // 10), event
    sessions = sessions_of(summary)
    assert all(any(s.pod == pod for s in sessions) for pod in new)  # every new pod carried sessions
    # live polling sessions of moved clients broke (a wrong-pod answer) and came back
    assert event["live_at_event"] >= 30
    assert event["broken"].get("wrong_pod", 0) > 0, event
    broken = [s for s in sessions if s.disrupted_by == "e1"]
    assert broken and all(s.mode.value != "websocket" for s in broken)  # one connection: WebSocket survives
    assert event["recovered"] == event["disrupted_sessions"]
    assert 0.3 <= event["reconnect_s"]["p50"] <= 6.0, event  # socket.io-client's 1 s ± 50 %, growing to 5 s
    assert any(s.retry > 0 for s in sessions)  # reconnections are marked as such
    assert event["new_pods_half_share_s"] is not None
    assert summary["checks"]["continuity"]["measured"] == "pass"  # disruptions are counted apart


def test_haproxy_cookie_3_to_6_breaks_nothing_and_only_new_clients_reach_the_new_pods(
    e2e_reports_dir: Path,
) -> None:
    # clients arrive over 20 s, so some come after the event at 8 s without a cookie
    summary = swarm(
        "haproxy-cookie",
        e2e_reports_dir,
        30,
        events="8s scale app 6",
        session_length=LENGTH,
        calls=2,
        users=40,
        spawn_rate=2,
    )
    event = the_event(summary)
    new = ["app-3", "app-4", "app-5"]
    assert event["added"] == new
    alive_at_the_end(summary, new)
    assert event["live_at_event"] >= 10 and event["disrupted_sessions"] == 0, event  # live, and none broke
    assert event["minimum_remap"] == 0 and event["clients_compared"] >= 10
    assert event["clients_remapped"] == 0, event  # clients keep their cookies, so their pods
    sessions = sessions_of(summary)
    event_at = min(s.started for s in sessions) + 8
    first_seen: dict[str, float] = {}
    for s in sorted(sessions, key=lambda s: s.started):
        first_seen.setdefault(s.client, s.started)
    on_new = [s for s in sessions if s.pod in new]
    assert on_new, "new pods got no sessions: new clients should reach them"
    assert all(first_seen[s.client] > event_at for s in on_new)  # only clients that came after the event
    assert summary["checks"]["continuity"]["measured"] == "pass"


def test_seed_recipe_3_to_5_new_pods_alive_yet_starved_and_the_report_says_why(e2e_reports_dir: Path) -> None:
    summary = swarm("seed", e2e_reports_dir, 22, events="8s scale app 5", session_length=4.0, calls=1, users=40)
    event = the_event(summary)
    new = ["app-3", "app-4"]
    assert event["added"] == new
    alive_at_the_end(summary, new)
    # they could have carried sessions: alive, answering a handshake sent straight to them …
    assert event["unreached"] == new and "answered directly" in event["observed"], event
    # … yet none reached them: kube-proxy's ClientIP affinity keeps every nginx pod on its old endpoint
    assert event["sessions_on_new_pods"] == 0
    assert not any(s.pod in new for s in sessions_of(summary))
    assert "ClientIP affinity" in event["why"] and "got no sessions at all" in event["reading"]
    assert event["live_at_event"] > 0


def test_6_to_3_breaks_the_sessions_of_removed_pods_and_they_recover_on_the_rest(e2e_reports_dir: Path) -> None:
    base = load_topology("nginx-hash")
    six = base.model_copy(update={"app": base.app.model_copy(update={"replicas": 6})})
    summary = swarm(six, e2e_reports_dir, 28, events="10s scale app 3", session_length=LENGTH, calls=2, users=45)
    event = the_event(summary)
    gone = ["app-3", "app-4", "app-5"]
    assert event["removed"] == gone and "no longer answer" in event["observed"]
    assert not set(summary["pods"]) & set(gone)
    sessions = sessions_of(summary)
    live_on_gone = [s for s in sessions if s.pod in gone and s.started < s.ended and s.connected]
    assert live_on_gone  # they carried sessions before
    broken = [s for s in sessions if s.disrupted_by == "e1"]
    assert len(broken) >= 5 and {s.pod for s in broken} <= set(gone), event
    assert event["recovered"] == len(broken) and event["reconnect_s"]["p50"] is not None
    by_client = {s.client: s for s in broken}
    for client in by_client:  # each came back, on a pod that stayed
        later = [s for s in sessions if s.client == client and s.started >= by_client[client].ended and s.connected]
        assert later and later[0].pod in {"app-0", "app-1", "app-2"}, later[:1]
    assert event["clients_remapped"] >= event["minimum_remap"] > 0
    assert "reconnected after" in event["reading"]


@pytest.mark.parametrize("action", ["kill", "restart"])
def test_kill_and_rolling_restart_replace_pods_that_live_to_the_end(e2e_reports_dir: Path, action: str) -> None:
    summary = swarm(
        "nginx-hash", e2e_reports_dir, 24, events=f"8s {action} app", session_length=LENGTH, calls=2, users=40
    )
    event = the_event(summary)
    replaced = event["added"]
    assert len(replaced) == (1 if action == "kill" else 3) and len(event["removed"]) == len(replaced)
    alive_at_the_end(summary, replaced)
    assert "answered handshakes through the entry" in event["observed"]
    sessions = sessions_of(summary)
    broken = [s for s in sessions if s.disrupted_by == "e1"]
    assert broken, "live sessions on the removed pods should have broken"  # they were there to break
    # each was on a pod that went, or was sent to its replacement (a consistent hash gives the new pod its own range)
    assert all(set(s.pods) & (set(event["removed"]) | set(replaced)) for s in broken)
    continuity = summary["checks"]["continuity"]["figures"]
    assert continuity["disrupted_by_event"] == {"e1": len(broken)}  # attributed to the event, not to the topology
    assert continuity["violations"] == 0
    assert all(any(s.pod == pod for s in sessions) for pod in replaced)
    assert json.dumps(summary["events"])  # serialisable as written


@pytest.mark.parametrize("topology", ["no-affinity", "nginx-hash"])
def test_long_sessions_still_judge_affinity_both_ways(e2e_reports_dir: Path, topology: str) -> None:
    """With long sessions a client has a few sessions in a run; affinity is judged on them: the negative control
    still fails, the sticky topology still passes."""
    summary = swarm(topology, e2e_reports_dir, 20, session_length=3.0, calls=1, users=40)
    affinity = summary["checks"]["affinity"]
    assert affinity["figures"]["affinity_run"] == 3 and affinity["figures"]["judged"] >= 30, affinity
    assert affinity["measured"] == load_topology(topology).expected_verdicts()["affinity"], affinity
    assert summary["exit_code"] == 0, summary["checks"]
