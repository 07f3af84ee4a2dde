"""Per-event scaling figures, on hand-built sessions: disruptions, remapping against the minimum, recovery,
and new pods taking their share — each with a case built to pass and one built to fail."""

from __future__ import annotations

from harness.checks.scaling import (
    ScalingHints,
    assign_disruptions,
    break_kind,
    event_report,
    exit_report,
    hints_for,
    minimum_remap,
    scaling_report,
)
from harness.client.records import Mode, SessionRecord
from harness.events import EventRecord
from harness.topology import load_topology


def session(
    client: str,
    pod: str | None,
    started: float,
    ended: float | None = None,
    *,
    broken: bool = False,
    pods: list[str] | None = None,
) -> SessionRecord:
    record = SessionRecord(
        client=client,
        source="127.64.0.1",
        mode=Mode.POLLING,
        started=started,
        ended=ended if ended is not None else started + 0.5,
        connected=True,
    )
    record.pods = pods if pods is not None else ([pod] if pod else [])
    if broken:
        record.sticky_failures = 1
        record.first_failure = "post 400: Invalid session"
    return record


def event(
    action: str, before: list[str], after: list[str], t: float = 100.0, replicas: int | None = None
) -> EventRecord:
    return EventRecord(
        id="e1",
        label=f"{t:g}s {action} app",
        action=action,
        target="app",
        replicas=replicas,
        started=t,
        ended=t + 1,
        pods_before=before,
        pods_after=after,
        removed=[p for p in before if p not in after],
        added=[p for p in after if p not in before],
    )


def test_broken_sessions_live_on_a_removed_pod_are_disrupted_and_no_others() -> None:
    ev = event("scale", ["app-0", "app-1", "app-2"], ["app-0"], replicas=1)
    on_removed = session("a", None, 99.0, 100.5, broken=True, pods=["app-1", "app-0"])
    fine_on_removed = session("b", "app-2", 99.5, 100.2)
    broken_elsewhere = session("c", "app-0", 99.0, 100.5, broken=True)
    broken_later = session("d", None, 150.0, 151.0, broken=True, pods=["app-1"])
    marked = assign_disruptions([on_removed, fine_on_removed, broken_elsewhere, broken_later], [ev])
    assert marked == 1
    assert on_removed.disrupted_by == "e1"
    assert fine_on_removed.disrupted_by is None  # not broken: nothing to excuse
    assert broken_elsewhere.disrupted_by is None  # broken on a pod that stayed: the topology's fault
    assert broken_later.disrupted_by is None  # long after the event


def test_a_fault_excuses_the_breaks_it_explains_and_never_a_wrong_pod_answer() -> None:
    storm = event("fault", ["app-0", "app-1"], ["app-0", "app-1"], t=100.0)
    storm.ended = 110.0  # set at 100 s, cleared at 110 s
    reset = session("a", "app-0", 104.0, 105.0)
    reset.error = "connection reset by peer"
    wrong_pod = session("b", None, 104.0, 105.0, broken=True, pods=["app-1"])  # a wrong-pod answer
    two_pods = session("c", None, 104.0, 105.0, pods=["app-0", "app-1"])
    two_pods.error = "connection reset by peer"
    reset_after = session("d", "app-0", 130.0, 131.0)
    reset_after.error = "connection reset by peer"
    fine = session("e", "app-1", 104.0, 105.0)
    assert assign_disruptions([reset, wrong_pod, two_pods, reset_after, fine], [storm]) == 1
    assert reset.disrupted_by == "e1"  # a reset while the storm was on: the storm's
    assert wrong_pod.disrupted_by is None and two_pods.disrupted_by is None  # no fault explains another pod
    assert reset_after.disrupted_by is None and fine.disrupted_by is None


def test_minimum_remap_per_kind_of_event() -> None:
    before = {f"c{i}": f"app-{i % 4}" for i in range(40)}  # 10 clients per pod
    assert (
        minimum_remap(
            event(
                "scale", ["app-0", "app-1", "app-2", "app-3"], ["app-0", "app-1", "app-2", "app-3", "app-4"], replicas=5
            ),
            before,
        )
        == 8
    )
    assert (
        minimum_remap(event("scale", ["app-0", "app-1", "app-2", "app-3"], ["app-0", "app-1"], replicas=2), before)
        == 20
    )
    assert (
        minimum_remap(event("kill", ["app-0", "app-1", "app-2", "app-3"], ["app-1", "app-2", "app-3", "app-4"]), before)
        == 10
    )
    assert (
        minimum_remap(
            event("restart", ["app-0", "app-1", "app-2", "app-3"], ["app-4", "app-5", "app-6", "app-7"]), before
        )
        == 40
    )
    assert minimum_remap(event("lb-out", ["app-0", "app-1"], ["app-0", "app-1"]), before) == 0


def clients_before_and_after(mapping_after: dict[int, str]) -> list[SessionRecord]:
    sessions = []
    for i in range(30):
        sessions.append(session(f"c{i}", f"app-{i % 3}", 90.0 + i * 0.1))
        sessions.append(session(f"c{i}", mapping_after.get(i, f"app-{i % 3}"), 105.0 + i * 0.1))
    return sessions


def test_consistent_remap_is_at_the_minimum_and_new_pod_takes_its_share() -> None:
    # scale 3 → 4: a consistent strategy moves about a quarter of the clients, all onto the new pod
    moved = {i: "app-3" for i in range(0, 30, 4)}  # 8 of 30 clients
    ev = event("scale", ["app-0", "app-1", "app-2"], ["app-0", "app-1", "app-2", "app-3"], replicas=4)
    report = event_report(clients_before_and_after(moved), ev, None)
    assert report["clients_compared"] == 30
    assert report["minimum_remap"] == 8
    assert report["clients_remapped"] == 8 and report["remap_excess"] == 0
    assert report["sessions_on_new_pods"] == 8
    assert report["new_pods_share_s"] is not None


def test_new_pod_that_gets_nothing_is_reported_as_such() -> None:
    ev = event("scale", ["app-0", "app-1", "app-2"], ["app-0", "app-1", "app-2", "app-3"], replicas=4)
    report = event_report(clients_before_and_after({}), ev, None)
    assert report["clients_remapped"] == 0 and report["minimum_remap"] == 8
    assert report["sessions_on_new_pods"] == 0 and report["new_pods_share_s"] is None
    assert "new pods app-3 got no sessions at all" in report["reading"]


def test_reshuffling_everything_is_far_above_the_minimum() -> None:
    reshuffled = {i: f"app-{i % 3 + 1}" for i in range(30)}  # every client moves
    ev = event("scale", ["app-0", "app-1", "app-2"], ["app-0", "app-1", "app-2", "app-3"], replicas=4)
    report = event_report(clients_before_and_after(reshuffled), ev, None)
    assert report["clients_remapped"] == 30
    assert report["remap_excess"] == 22


def test_recovery_time_of_disrupted_clients() -> None:
    ev = event("kill", ["app-0", "app-1"], ["app-0", "app-2"])
    broken = session("a", None, 99.5, 100.2, broken=True, pods=["app-1"])
    broken.disrupted_by = "e1"
    recovered = session("a", "app-2", 103.0)
    report = event_report([broken, recovered, session("b", "app-0", 99.0), session("b", "app-0", 104.0)], ev, None)
    assert report["disrupted_sessions"] == 1
    assert report["recovered"] == 1
    assert report["recovery_s"] == {"p50": 3.0, "p99": 3.0}


def test_without_any_pod_identity_affinity_and_balance_say_so() -> None:
    from harness.checks import Thresholds, check_affinity, check_balance
    from harness.checks.base import NO_POD_IDENTITY

    anonymous = [session(f"c{i % 3}", None, float(i)) for i in range(60)]
    assert check_affinity(anonymous, Thresholds()).reason == NO_POD_IDENTITY
    assert check_balance(anonymous, ["app-0", "app-1"], Thresholds()).verdict == "n/a"
    assert check_balance(anonymous, ["app-0", "app-1"], Thresholds()).reason == NO_POD_IDENTITY
    # and with identity the same checks judge normally (negative control of the n/a)
    named = [session(f"c{i % 3}", f"app-{i % 2}", float(i)) for i in range(60)]
    assert check_affinity(named, Thresholds()).verdict == "fail"


def test_live_sessions_broken_and_how_and_the_reconnection() -> None:
    ev = event("scale", ["app-0", "app-1", "app-2"], ["app-0", "app-1", "app-2", "app-3"], replicas=4)
    wrong_pod = session("a", None, 95.0, 101.5, broken=True, pods=["app-0", "app-3"])
    reset = session("b", "app-3", 100.5, 102.0)  # onto the new pod, then lost: a reset
    reset.error = "connection lost while idle: post None: ConnectionError: Connection reset by peer"
    timeout = session("c", None, 96.0, 103.0, pods=["app-1", "app-3"])
    timeout.error = "whoami: no ack in 10s"
    untouched = session("d", "app-2", 90.0, 110.0)  # live, on a pod the event did not touch
    later = [session(x, "app-3" if x != "d" else "app-2", t) for x, t in (("a", 102.5), ("b", 103.5), ("c", 104.0))]
    sessions = [wrong_pod, reset, timeout, untouched, *later]
    assign_disruptions(sessions, [ev])
    report = event_report(sessions, ev, None)
    assert report["live_at_event"] == 4  # a, c and d were live at 100, b started while the event ran
    assert report["broken"] == {"wrong_pod": 2, "reset": 1}  # c was served by two pods: wrong pod first
    assert report["disrupted_sessions"] == 3 and untouched.disrupted_by is None
    assert report["reconnect_s"]["p50"] == 1.0 and report["reconnect_s"]["p99"] == 1.5
    assert "3 of 4 live sessions broken (1 reset, 2 wrong-pod), reconnected after 1 s (p50)" in report["reading"]


def test_break_kinds() -> None:
    assert break_kind(session("a", None, 1.0, broken=True, pods=["app-0"])) == "wrong_pod"
    timed = session("a", "app-0", 1.0)
    timed.error = "Socket.IO connect not acknowledged within 10s"
    assert break_kind(timed) == "timeout"
    timed.error = "whoami: no ack in 10s"
    assert break_kind(timed) == "timeout"
    lost = session("a", "app-0", 1.0)
    lost.error = "connection lost while idle: disconnected (transport close)"
    assert break_kind(lost) == "reset"
    missed = session("a", "app-0", 1.0)
    missed.mode, missed.upgraded = Mode.UPGRADE, False  # an upgrade that did not happen: no error text
    assert missed.violation is not None and break_kind(missed) == "other"


def test_cookie_affinity_allows_no_move_on_a_scale_up_and_a_hash_half() -> None:
    before = {f"c{i}": f"app-{i % 3}" for i in range(30)}
    ev = event("scale", ["app-0", "app-1", "app-2"], [f"app-{i}" for i in range(6)], replicas=6)
    assert minimum_remap(ev, before) == 15  # |6-3|/6
    assert minimum_remap(ev, before, ScalingHints(keeps_clients_on_scale_up=True)) == 0
    down = event("scale", [f"app-{i}" for i in range(6)], ["app-0", "app-1", "app-2"], replicas=3)
    spread = {f"c{i}": f"app-{i % 6}" for i in range(30)}
    assert minimum_remap(down, spread, ScalingHints(keeps_clients_on_scale_up=True)) == 15  # removed pods' clients


def test_hints_follow_the_topology() -> None:
    assert hints_for(load_topology("haproxy-cookie")).keeps_clients_on_scale_up
    assert not hints_for(load_topology("nginx-hash")).keeps_clients_on_scale_up
    assert hints_for(load_topology("nginx-hash")).why_new_pods_starve is None
    why = hints_for(load_topology("seed")).why_new_pods_starve
    assert why is not None and "ClientIP affinity" in why


def test_starved_new_pods_are_explained_and_the_half_share_of_live_sessions_timed() -> None:
    ev = event("scale", ["app-0", "app-1", "app-2"], ["app-0", "app-1", "app-2", "app-3"], replicas=4)
    ev.observed, ev.unreached = "app-3 answered directly", ["app-3"]
    starved = event_report(clients_before_and_after({}), ev, None, hints_for(load_topology("seed")))
    assert starved["why"] is not None and "ClientIP affinity" in starved["why"]
    assert starved["new_pods_half_share_s"] is None and starved["unreached"] == ["app-3"]
    # live sessions: 8 long ones on the old pods throughout, and new ones on app-3 from 104 s on
    live = [session(f"o{i}", f"app-{i % 3}", 90.0, 120.0) for i in range(8)]
    live += [session(f"n{i}", "app-3", 104.0 + i, 120.0) for i in range(4)]
    report = event_report(live, ev, None)
    # fair share 1/4: half of it is 1/8 of the live sessions; 1 of 9 at 104 s is not, 2 of 10 at 105 s is
    assert report["new_pods_half_share_s"] == 5.0 and report["why"] is None


def test_an_unplanned_exit_is_reported_apart_from_scaling() -> None:
    crash = EventRecord(
        id="x1",
        label="3.0s app-1 exited (killed by signal 9)",
        action="exit",
        target="app-1",
        replicas=None,
        started=100.0,
        ended=100.0,
        pods_before=["app-1"],
        removed=["app-1"],
        exit_status=-9,
        blame="system under test",
    )
    broken = session("a", None, 98.0, 100.3, pods=["app-1"])
    broken.error = "connection lost while idle: disconnected"
    assign_disruptions([broken], [crash])
    assert broken.disrupted_by == "x1"
    assert scaling_report([broken], [crash]) == []
    (line,) = exit_report({"x1": 1}, [crash], begin=97.0)
    assert line["what"] == "app-1" and line["at_s"] == 3.0 and line["disrupted_sessions"] == 1
    assert "nobody asked it to (exit status -9); 1 live sessions broken" in line["reading"]
    assert "finding about the system under test" in line["reading"]
