"""Long sessions against real app pods: connected for a while with calls spread over the time, idle between
them (long-polling, or a WebSocket with Engine.IO pings); ended early and cleanly when the run is over; and,
when the pod goes away under them, a broken session with the reason (the case the scaling report counts).
Also socket.io-client's reconnection delay, which follows a broken session."""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path

import pytest

from harness.checks.scaling import break_kind
from harness.client.records import ExchangeKind, Mode
from harness.client.session import Backoff, SimulatedClient
from tests.app.conftest import Pod, app_pod, stop

pytestmark = pytest.mark.timeout(60)


def client(url: str) -> SimulatedClient:
    return SimulatedClient("c1", "127.55.66.3", url, timeout=5)


@pytest.mark.parametrize("mode", list(Mode))
def test_a_long_session_lives_its_length_with_its_calls_spread_over_it(pod_a: Pod, mode: Mode) -> None:
    calls: list[float] = []
    c = SimulatedClient(
        "c1",
        "127.55.66.3",
        pod_a.url,
        timeout=5,
        on_exchange=lambda e: calls.append(e.t) if e.kind is ExchangeKind.ACK else None,
    )
    record = c.run_session(mode, calls=2, length=1.6)
    assert record.error is None and record.violation is None and record.pods == ["A"], record
    assert not record.stopped
    assert 1.6 <= record.ended - record.started <= 4.0  # the whole length, and not much more
    assert len(calls) == 3  # two whoami calls and the closing echo, at 1/4, 2/4, 3/4 of the length
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(0.2 <= g <= 0.8 for g in gaps), gaps
    if mode is Mode.POLLING:
        assert record.counts.get("poll", 0) >= 1  # long-polling while idle


def test_a_long_session_asked_to_stop_ends_early_and_cleanly(pod_a: Pod) -> None:
    stop_at = time.monotonic() + 0.8
    record = client(pod_a.url).run_session(
        Mode.WEBSOCKET, calls=1, length=30.0, should_stop=lambda: time.monotonic() > stop_at
    )
    assert record.stopped and record.error is None and record.violation is None
    assert record.ended - record.started < 5.0  # the stop is seen within a tick, not after 30 s


def test_wake_ends_a_session_that_ticks_slowly_at_once_and_without_it_the_tick_decides(pod_a: Pod) -> None:
    """With a 60 s idle tick the stop is seen only when `wake` says so; the control (no wake) shows the session
    was still running, stop asked, a second later."""
    stop = threading.Event()
    woken = client(pod_a.url)
    unwoken = client(pod_a.url)
    records: dict[str, float] = {}

    def run(c: SimulatedClient, name: str) -> None:
        record = c.run_session(Mode.WEBSOCKET, calls=0, length=30.0, should_stop=stop.is_set, idle_tick=60.0)
        assert record.stopped and record.error is None, record
        records[name] = time.monotonic()

    threads = [threading.Thread(target=run, args=(c, n)) for c, n in ((woken, "woken"), (unwoken, "unwoken"))]
    for t in threads:
        t.start()
    time.sleep(1.5)  # both connected and idle
    stop.set()
    asked = time.monotonic()
    woken.wake()
    threads[0].join(5)
    assert "woken" in records and records["woken"] - asked < 3.0  # close() included
    threads[1].join(1.0)
    assert "unwoken" not in records  # it could still be running: only its 60 s tick would look
    unwoken.wake()
    threads[1].join(5)
    assert "unwoken" in records


@pytest.mark.parametrize("mode", [Mode.POLLING, Mode.WEBSOCKET])
def test_a_long_session_whose_pod_dies_breaks_with_the_reason(tmp_path: Path, mode: Mode) -> None:
    with app_pod("D", tmp_path) as pod:
        threading.Timer(1.0, stop, args=(pod.process, 0.0)).start()
        record = client(pod.url).run_session(mode, calls=1, length=20.0)
    assert record.connected and record.pods == ["D"]
    assert record.error is not None and "connection lost while idle" in record.error, record
    assert record.ended - record.started < 10.0  # seen while idle, not at the end of the length
    assert break_kind(record) == "reset"


def test_a_long_session_on_a_healthy_pod_is_not_broken(pod_a: Pod) -> None:
    """The positive control of the test above: the same session, the pod left alone."""
    record = client(pod_a.url).run_session(Mode.POLLING, calls=1, length=2.0)
    assert record.error is None and break_kind(record) == "other"


def test_the_reconnection_delay_is_socket_io_clients() -> None:
    backoff = Backoff(rng=random.Random(7))
    first = [Backoff(rng=random.Random(seed)).next_delay() for seed in range(300)]
    assert all(0.5 <= d <= 1.5 for d in first)  # 1 s, randomisation 0.5
    assert min(first) < 0.7 and max(first) > 1.3  # both ways
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(d <= 5.0 for d in delays) and delays[-1] >= 2.5  # growing, capped at 5 s
    assert 1.0 <= delays[1] <= 3.0  # 2 s ± 50 %
    backoff.reset()
    assert backoff.next_delay() <= 1.5
    assert Backoff(jitter=0).next_delay() == 1.0
