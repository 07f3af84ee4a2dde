"""Per-event scaling figures, on hand-built sessions: disruptions, remapping against the minimum, recovery,
and new pods taking their share — each with a case built to pass and one built to fail."""

from __future__ import annotations

from harness.checks.scaling import assign_disruptions, event_report, minimum_remap
from harness.client.records import Mode, SessionRecord
from harness.events import EventRecord


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
