"""Simulated clients against real app pods: what a healthy session records, and that every way a session can
break continuity is detected on a setup built to break it (and not on the same setup left intact).

The broken setups are made with the TCP splitter of conftest.py: one per-connection decision is all it takes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import socketio

from harness.client.records import Exchange, ExchangeKind, Mode, SessionRecord
from harness.client.session import SimulatedClient
from tests.app.conftest import Pod, free_port
from tests.client.conftest import Splitter

pytestmark = pytest.mark.timeout(60)

CALLS = 3
HTTP_KINDS = {ExchangeKind.HANDSHAKE, ExchangeKind.POLL, ExchangeKind.POST, ExchangeKind.UPGRADE}


class Run:
    """One client's sessions with everything it reported."""

    def __init__(self, url: str, source: str = "127.55.66.2") -> None:
        self.records: list[SessionRecord] = []
        self.exchanges: list[Exchange] = []
        self.client = SimulatedClient(
            "c1", source, url, sink=self.records.append, on_exchange=self.exchanges.append, timeout=5
        )

    def session(self, mode: Mode) -> SessionRecord:
        record = self.client.run_session(mode, calls=CALLS, call_interval=0.01)
        assert self.records[-1] is record
        return record


def peers_of(pod: Pod) -> dict[str, int]:
    """Requests the pod received per source address, asked over a WebSocket from 127.0.0.1."""
    with requests.Session() as http:
        sio = socketio.Client(reconnection=False, handle_sigint=False, http_session=http)
        sio.connect(pod.url, transports=["websocket"], wait_timeout=5)
        try:
            peers: dict[str, int] = sio.call("peers", timeout=5)
        finally:
            sio.disconnect()
    return peers


@pytest.fixture
def to_a(pod_a: Pod) -> Iterator[Splitter]:
    """The splitter, routing every connection to A: the positive control of each broken setup."""
    with Splitter(lambda _: (pod_a.host, pod_a.port)) as relay:
        yield relay


@pytest.mark.parametrize("mode", list(Mode))
def test_healthy_session(pod_a: Pod, mode: Mode) -> None:
    run = Run(pod_a.url)
    record = run.session(mode)
    assert record.violation is None, record
    assert record.error is None
    assert record.connected
    assert record.pods == ["A"]
    assert record.sid
    assert record.started <= record.ended
    assert record.sticky_failures == 0
    acks = [e for e in run.exchanges if e.kind is ExchangeKind.ACK]
    assert [e.pod for e in acks] == ["A"] * CALLS + [None]  # whoami names the pod; the echo does not
    assert all(e.status == 200 and e.error is None and e.sid == record.sid for e in acks)
    counts = record.counts
    assert counts["ack"] == CALLS + 1
    assert counts["handshake"] == 1
    assert sum(counts.values()) == len(run.exchanges)
    assert all(e.source == "127.55.66.2" and e.client == "c1" for e in run.exchanges)
    if mode is Mode.POLLING:
        assert counts["poll"] >= 1 and counts["post"] >= 1 and "upgrade" not in counts
        assert record.upgraded is None
    elif mode is Mode.UPGRADE:
        assert counts["upgrade"] == 1
        assert record.upgraded is True and not record.missed_upgrade
    else:
        assert set(counts) == {"handshake", "ack"}  # one WebSocket, no HTTP request after it
        assert record.upgraded is None
    assert all(e.pod == "A" for e in run.exchanges if e.kind in HTTP_KINDS)


def test_sessions_follow_one_another(pod_a: Pod) -> None:
    run = Run(pod_a.url)
    first, second = run.session(Mode.POLLING), run.session(Mode.POLLING)
    assert first.sid != second.sid
    assert second.started >= first.ended
    assert "reconnect" not in second.counts  # the caller decides what a new session means


@pytest.mark.parametrize(
    ("mode", "source"),
    [(Mode.POLLING, "127.55.66.77"), (Mode.UPGRADE, "127.55.67.78"), (Mode.WEBSOCKET, "127.55.68.79")],
)
def test_server_sees_the_bound_source(pod_a: Pod, mode: Mode, source: str) -> None:
    run = Run(pod_a.url, source)
    record = run.session(mode)
    assert record.violation is None
    requests_seen = peers_of(pod_a).get(source, 0)
    recorded = sum(1 for e in run.exchanges if e.kind in HTTP_KINDS)
    assert requests_seen >= recorded >= 1  # every request came from the bound address (late ones go unrecorded)


def test_refused_connect_is_a_finished_session() -> None:
    run = Run(f"http://127.0.0.1:{free_port()}")
    record = run.session(Mode.POLLING)
    assert not record.connected
    assert record.error is not None and record.error.startswith("connect failed")
    assert record.counts == {"handshake": 1}
    [exchange] = run.exchanges
    assert exchange.status is None and exchange.error is not None and "refused" in exchange.error.lower()
    assert record.violation is None  # nothing reached a pod: an error, not a continuity violation


def test_websocket_only_refused() -> None:
    run = Run(f"http://127.0.0.1:{free_port()}")
    record = run.session(Mode.WEBSOCKET)
    assert not record.connected and record.error
    assert record.counts == {"handshake": 1}


# negative controls: each way of breaking continuity, detected; the same splitter routing to A only, not


@pytest.mark.parametrize("mode", [Mode.POLLING, Mode.UPGRADE])
def test_round_robin_breaks_polling(pod_a: Pod, pod_b: Pod, to_a: Splitter, mode: Mode) -> None:
    a, b = (pod_a.host, pod_a.port), (pod_b.host, pod_b.port)
    with Splitter(lambda i: a if i == 0 else b) as broken:
        record = Run(broken.url).session(mode)
    assert record.violation is not None
    assert record.sticky_failures >= 1
    assert record.first_failure is not None and "Invalid session" in record.first_failure
    assert record.pods == ["A", "B"]  # B named itself in its 400
    assert broken.connections >= 2

    control = Run(to_a.url).session(mode)
    assert control.violation is None, control
    assert control.pods == ["A"]


def test_websocket_only_survives_round_robin(pod_a: Pod, pod_b: Pod) -> None:
    a, b = (pod_a.host, pod_a.port), (pod_b.host, pod_b.port)
    with Splitter(lambda i: a if i == 0 else b) as broken:
        record = Run(broken.url).session(Mode.WEBSOCKET)
    assert record.violation is None, record
    assert record.pods == ["A"]
    assert broken.connections == 1


def test_upgrade_sent_to_another_pod(pod_a: Pod, pod_b: Pod, to_a: Splitter) -> None:
    """Only the upgrade's connection goes to B: the session goes on polling on A, and says why that is wrong."""
    a, b = (pod_a.host, pod_a.port), (pod_b.host, pod_b.port)
    with Splitter(lambda i: b if i == 1 else a) as broken:
        record = Run(broken.url).session(Mode.UPGRADE)
    assert record.connected and record.error is None  # the session works, on polling
    assert record.missed_upgrade
    assert record.upgraded is False
    assert record.first_failure is not None and record.first_failure.startswith("upgrade 400")
    assert record.violation is not None

    control = Run(to_a.url).session(Mode.UPGRADE)
    assert control.upgraded is True and not control.missed_upgrade
    assert control.violation is None


def test_upgrade_that_fails_silently(pod_a: Pod, to_a: Splitter) -> None:
    """The upgrade's connection is dropped: no wrong-pod answer at all, only the missing upgrade tells."""
    a = (pod_a.host, pod_a.port)
    with Splitter(lambda i: None if i == 1 else a) as broken:
        record = Run(broken.url).session(Mode.UPGRADE)
    assert record.connected and record.error is None
    assert record.sticky_failures == 0
    assert record.pods == ["A"]
    assert record.missed_upgrade
    assert record.violation == "upgrade to WebSocket did not happen"

    control = Run(to_a.url).session(Mode.UPGRADE)
    assert control.violation is None


def test_app_without_whoami(pod_a: Pod) -> None:
    run = Run(pod_a.url)
    run.client.whoami = False
    record = run.session(Mode.POLLING)
    assert record.violation is None and record.error is None
    assert record.counts["ack"] == CALLS + 1
    assert all(e.pod is None for e in run.exchanges if e.kind is ExchangeKind.ACK)
    assert record.pods == ["A"]  # from x-pod
