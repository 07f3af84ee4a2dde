"""Clients keep cookies from one session to the next, as browsers do, so a proxy that pins clients by cookie
works for them: checked against the real HAProxy tier of the ``haproxy-cookie`` topology on the local backend,
with clients that drop their cookies as the negative control."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import requests

from harness.client.records import Mode
from harness.client.session import SimulatedClient
from harness.client.transport import keep_cookies
from harness.cluster.local.backend import LocalCluster
from harness.net import addresses
from harness.topology import load_topology

pytestmark = pytest.mark.timeout(90)

SESSIONS = 6


def pods_of_sessions(url: str, mode: Mode, *, keep: bool, index: int) -> Counter[str]:
    client = SimulatedClient(f"c{index}", addresses.client_address(index), url, timeout=5, keep_cookies=keep)
    records = [client.run_session(mode, calls=1, call_interval=0.01) for _ in range(SESSIONS)]
    assert all(r.error is None for r in records), [r.error for r in records]
    return Counter(r.pod for r in records if r.pod is not None)


def test_a_cookie_pins_every_mode_to_one_pod_and_dropping_it_does_not(tmp_path: Path) -> None:
    run_id = f"test-{os.getpid()}-cookies"
    with LocalCluster(load_topology("haproxy-cookie"), run_id=run_id, run_dir=tmp_path, seed=3) as cluster:
        for index, mode in enumerate(Mode):
            kept = pods_of_sessions(cluster.entry_url, mode, keep=True, index=index)
            assert len(kept) == 1 and sum(kept.values()) == SESSIONS, (mode, kept)
            # negative control: the same client without its cookie is round-robined over the pods
            dropped = pods_of_sessions(cluster.entry_url, mode, keep=False, index=index + 10)
            assert len(dropped) > 1, (mode, dropped)


def test_set_cookie_of_a_websocket_handshake_is_kept() -> None:
    jar = requests.cookies.RequestsCookieJar()
    keep_cookies(jar, "SERVERID=app-1; path=/; theme=dark", "127.1.0.1")
    assert jar.get_dict() == {"SERVERID": "app-1", "theme": "dark"}
    keep_cookies(jar, "not a cookie \x00", "127.1.0.1")
    assert jar.get_dict() == {"SERVERID": "app-1", "theme": "dark"}
