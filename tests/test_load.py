"""The load side's health: when a load process counts as saturated, and what its timeouts then count as."""

from __future__ import annotations

import json
from pathlib import Path

from harness.client.records import Mode, SessionRecord, write_session
from harness.load import is_load_timeout, load_report, set_apart, write_load
from harness.net.addresses import client_address, worker_client_index
from harness.runs import judge
from harness.topology import load_topology

T0 = 1_800_000_000.0


def samples(
    n: int, *, busy: set[int] = frozenset(), live: int = 10, lag_at: set[int] = frozenset()
) -> list[list[float]]:
    """n seconds of samples from T0: CPU 95 % in the ``busy`` seconds (30 % otherwise), lag 150 ms in ``lag_at``."""
    return [
        [T0 + i, 95.0 if i in busy else 30.0, 150.0 if i in lag_at else 2.0, 100 * 2**20, float(live)] for i in range(n)
    ]


def record(client: str, at: float, *, error: str | None = None, pods: tuple[str, ...] = ("app-0",)) -> SessionRecord:
    return SessionRecord(
        client=client,
        source="127.64.0.1",
        mode=Mode.WEBSOCKET,
        started=at,
        ended=at + 0.5,
        sid=f"s-{client}-{at}",
        pods=list(pods),
        connected=True,
        error=error,
    )


def test_a_process_busy_for_more_than_a_tenth_of_the_run_is_saturated(tmp_path: Path) -> None:
    write_load(tmp_path, "w0", role="worker", samples=samples(20, busy={1, 2, 3}), sessions=5)  # 15 %
    write_load(tmp_path, "w1", role="worker", samples=samples(20, busy={1, 2}), sessions=7)  # 10 %: not above
    write_load(tmp_path, "master", role="master", samples=samples(20, live=0), sessions=12)
    report = load_report(tmp_path)
    by_name = {p["name"]: p for p in report["per_process"]}
    assert by_name["w0"]["saturated"] and by_name["w0"]["busy_share"] == 0.15
    assert not by_name["w1"]["saturated"] and not by_name["master"]["saturated"]
    assert report["saturated"] and "w0 (busy 15% of the run" in report["reason"] and "w1" not in report["reason"]
    assert report["processes"] == 3 and report["workers"] == 2
    assert report["sessions_per_process"] == {"w0": 5, "w1": 7}  # the master ran none itself
    assert report["peak_live_sessions"] == 20  # the workers' live sessions, second by second, summed


def test_loop_lag_alone_saturates_and_a_quiet_run_does_not(tmp_path: Path) -> None:
    write_load(tmp_path, "0-1", role="lone", samples=samples(10, lag_at={4, 5}), sessions=3)
    assert load_report(tmp_path)["saturated"]
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    write_load(quiet, "0-1", role="lone", samples=samples(10, lag_at={4}), sessions=3)
    report = load_report(quiet)
    assert not report["saturated"] and report["reason"] is None
    assert report["per_process"][0]["peak_lag_ms"] == 150.0


def test_the_master_names_workers_whose_last_records_never_came(tmp_path: Path) -> None:
    write_load(tmp_path, "master", role="master", samples=[], sessions=0, failure="load worker(s) w1 sent no final")
    assert load_report(tmp_path)["failure"] == "load worker(s) w1 sent no final"


def test_only_timeouts_of_a_saturated_process_in_its_busy_seconds_are_set_apart(tmp_path: Path) -> None:
    write_load(tmp_path, "w0", role="worker", samples=samples(20, busy={5, 6, 7}), sessions=4)
    write_load(tmp_path, "w1", role="worker", samples=samples(20, busy={5}), sessions=2)
    report = load_report(tmp_path)
    timeout = "call: no ack in 10s"
    sessions = [
        ("w0", record("c0", T0 + 5.2, error=timeout)),  # saturated process, busy second: set apart
        ("w0", record("c2", T0 + 12.0, error=timeout)),  # same process, a quiet second: kept
        ("w0", record("c4", T0 + 6.0, error=timeout, pods=("app-0", "app-1"))),  # two pods: a stickiness finding
        ("w0", record("c6", T0 + 7.0, error="refused")),  # not a timeout
        ("w1", record("c1", T0 + 5.1, error=timeout)),  # not saturated: kept
    ]
    kept, dropped = set_apart(sessions, report)
    assert dropped == 1
    assert [r.client for r in kept] == ["c2", "c4", "c6", "c1"]


def test_a_wrong_pod_answer_is_never_a_load_timeout() -> None:
    wrong = record("c0", T0, error="call: no ack in 10s")
    wrong.sticky_failures = 1
    assert not is_load_timeout(wrong)
    assert is_load_timeout(record("c0", T0, error="Socket.IO connect not acknowledged within 10s"))


def _run_dir(tmp_path: Path, busy: set[int]) -> Path:
    run_dir = tmp_path / f"run-{len(busy)}"
    run_dir.mkdir()
    with open(run_dir / "sessions-0-1.jsonl", "w", encoding="utf-8") as fh:
        for i in range(60):
            write_session(fh, record(f"c{i % 12}", T0 + i / 3, pods=(f"app-{i % 12 % 3}",)))
        for i in range(6):
            write_session(fh, record(f"c{i}", T0 + 10.2, error="call: no ack in 10s"))
    write_load(run_dir, "0-1", role="lone", samples=samples(30, busy=busy), sessions=66)
    return run_dir


def test_the_verdict_says_a_saturated_generator_measured_itself_and_sets_its_timeouts_apart(tmp_path: Path) -> None:
    topology = load_topology("nginx-hash")
    pods = ["app-0", "app-1", "app-2"]
    hot = judge(_run_dir(tmp_path, busy={8, 9, 10, 11}), topology, backend="local", pods=pods)
    calm = judge(_run_dir(tmp_path, busy=set()), topology, backend="local", pods=pods)
    assert hot.summary["load"]["saturated"] and hot.summary["load"]["load_side_timeouts"] == 6
    assert "SATURATED LOAD GENERATOR: load generator saturated: 0-1 (busy 13% of the run" in hot.text
    assert "latencies measure the harness, not the system; 6 timeouts set apart as load-side errors" in hot.text
    assert hot.summary["sessions"] == 60
    # the same records from a process that kept up: every session is judged, nothing is said about the load
    assert not calm.summary["load"]["saturated"] and calm.summary["load"]["load_side_timeouts"] == 0
    assert calm.summary["sessions"] == 66 and "SATURATED" not in calm.text
    on_disk = json.loads((tmp_path / "run-4" / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["load"]["processes"] == 1 and "_busy" not in on_disk["load"]


def test_workers_number_their_clients_as_one_process_would() -> None:
    numbers = [worker_client_index(k, w, 3) for w in range(3) for k in range(100)]
    assert sorted(numbers) == list(range(300))  # disjoint, and together the numbers of one process's 300 clients
    assert {client_address(n, "shared-24") for n in numbers} == {client_address(n, "shared-24") for n in range(300)}
    late = [worker_client_index(k, 3, 3) for k in range(100)]  # a fourth worker, joined late
    assert not set(late) & set(numbers) and len(set(late)) == 100
    assert not {client_address(n) for n in late} & {client_address(n) for n in numbers}
