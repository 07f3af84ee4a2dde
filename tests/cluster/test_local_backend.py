"""The local backend with real processes: up, status, scaling, down, and failures that must leave nothing behind.

These tests start real app pods (``python -m harness.app``), real nginx and the network daemon; each brings a
small topology up in about a second.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster.local import tier as tier_module
from harness.cluster.local.backend import LocalCluster, handshake, port_free
from harness.cluster.local.processes import find_run_processes
from harness.errors import SetupError
from harness.net import addresses
from harness.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]


def cluster(name: str, tmp_path: Path, run_id: str, **kwargs: object) -> LocalCluster:
    return LocalCluster(load_topology(name), run_id=run_id, run_dir=tmp_path / run_id, seed=2, **kwargs)  # type: ignore[arg-type]


def assert_nothing_left(run_id: str) -> None:
    deadline = time.monotonic() + 5
    while find_run_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert find_run_processes(run_id) == {}


@pytest.fixture
def run_id(request: pytest.FixtureRequest) -> Iterator[str]:
    rid = f"test-{os.getpid()}-{request.node.name[:40]}"
    yield rid
    assert_nothing_left(rid)


def test_up_status_down_with_an_nginx_tier(tmp_path: Path, run_id: str) -> None:
    c = cluster("nginx-hash", tmp_path, run_id)
    with c:
        pods = {p.name for p in c.pods("app")}
        assert pods == {"app-0", "app-1", "app-2"}
        assert {p.name for p in c.pods("tier")} == {"nginx-0", "nginx-1"}
        assert handshake(c.entry_url) in pods
        status = c.status()
        assert all(status["processes"].values())
        assert set(status["network"]["lb"]["nodes"]) == {"node-0", "node-1", "node-2"}
        assert (c.run_dir / "pods" / "nginx-0" / "nginx.conf").read_text().count("hash $proxy_protocol_addr") == 1
        assert find_run_processes(run_id)
        entry_port = int(c.entry_url.rsplit(":", 1)[1])
    assert port_free(addresses.LB_IP, entry_port)
    assert not (c.run_dir / "cluster.json").exists()


def test_scaling_updates_the_endpoints_every_node_and_tier_sees(tmp_path: Path, run_id: str) -> None:
    with cluster("no-affinity", tmp_path, run_id) as c:
        c.scale("app", 5)
        assert [p.name for p in c.pods()] == [f"app-{i}" for i in range(5)]
        seen = Counter(handshake(c.entry_url) for _ in range(150))
        assert {"app-3", "app-4"} <= set(seen)  # new pods get traffic
        c.scale("app", 1)
        assert c.removed_pods == ["app-1", "app-2", "app-3", "app-4"]
        assert Counter(handshake(c.entry_url) for _ in range(30)) == Counter({"app-0": 30})
    with cluster("nginx-hash", tmp_path, run_id + "-t") as c:
        c.scale("app", 1)
        assert {handshake(c.entry_url) for _ in range(20)} == {"app-0"}  # nginx reloaded with one upstream
        c.scale("tier", 3)
        assert len(c.pods("tier")) == 3
    assert_nothing_left(run_id + "-t")


def test_attach_from_state_then_down(tmp_path: Path, run_id: str) -> None:
    c = cluster("no-affinity", tmp_path, run_id, attached=False)
    try:
        c.up()
        other = LocalCluster.attach(c.state_path)
        assert other.entry_url == c.entry_url
        assert all(other.status()["processes"].values())
        other.scale("app", 2)
        assert [p.name for p in other.pods()] == ["app-0", "app-1"]
        other.down()
    finally:
        c.down()


def test_a_pod_that_dies_at_start_fails_clearly_and_leaves_nothing(tmp_path: Path, run_id: str) -> None:
    c = cluster("nginx-hash", tmp_path, run_id, app_cmd=[sys.executable, "-c", "print('no app here'); exit(3)"])
    with pytest.raises(SetupError, match=r"app pod app-0 exited at start:\s+no app here"), c:
        pass


def test_a_port_in_use_is_one_clear_error(tmp_path: Path, run_id: str) -> None:
    with socket.socket() as busy:
        busy.bind((addresses.LB_IP, 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SetupError, match=rf"ports {port}-{port + 4} are in use.*--base-port"):
            cluster("no-affinity", tmp_path, run_id, base_port=port).up()


def test_ports_follow_the_seed_so_a_run_can_be_replayed(tmp_path: Path) -> None:
    # nginx's consistent hash places servers by "address:port": the same seed must give the same ports
    def base(seed: int, run_id: str) -> int:
        c = LocalCluster(load_topology("nginx-hash"), run_id=run_id, run_dir=tmp_path / run_id, seed=seed)
        return c._allocate_ports().base

    assert base(12, "a") == base(12, "b")
    assert len({base(seed, "a") for seed in range(8)}) > 1


def test_missing_nginx_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tier_module.shutil, "which", lambda _name: None)
    monkeypatch.setattr(tier_module.os.path, "exists", lambda _path: False)
    with pytest.raises(SetupError, match="apt-get install nginx-light"):
        tier_module.find_binary(tier_module.PROXIES["nginx"])
    with pytest.raises(SetupError, match="apt-get install haproxy"):
        tier_module.find_binary(tier_module.PROXIES["haproxy"])


def test_ctrl_c_during_a_run_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--topology",
            "nginx-hash",
            "--users",
            "4",
            "--duration",
            "60s",
            "--reports-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("up:"):
            break
    run_line = next(line for line in lines if line.startswith("run "))
    run_id = run_line.split()[1].rstrip(":")
    assert find_run_processes(run_id)
    time.sleep(2)  # let the swarm start
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + out
    assert "interrupted" in out
    assert_nothing_left(run_id)
