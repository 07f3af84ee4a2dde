"""Locust's distributed mode: a master and workers on loopback, one cluster, one verdict over every client.

Workers only make load: they bring nothing up, write nothing to disk, and send their records to the master over
Locust's own messages; the master (or the lone process) owns the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cluster.local.processes import find_run_processes

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only")]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "scenarios" / "sticky.py")
LOCUST = [sys.executable, "-m", "locust", "-f", SCENARIO, "--headless"]
HARNESS = [sys.executable, "-m", "harness.cli"]


def run(argv: list[str], timeout: float = 180, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def records(run_dir: Path, name: str) -> list[dict[str, Any]]:
    lines = (run_dir / f"sessions-{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def test_a_master_and_two_workers_judge_a_harness_up_cluster(tmp_path: Path) -> None:
    reports = ["--reports-dir", str(tmp_path)]
    up = run([*HARNESS, "up", "--topology", "nginx-hash", "--name", "dist", "--seed", "12", *reports])
    assert up.returncode == 0, up.stdout + up.stderr
    info = json.loads(run([*HARNESS, "status", "--name", "dist", "--json", *reports]).stdout)
    port = free_port()
    run_dir = tmp_path / "swarm"
    master_argv = [
        *LOCUST,
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        "2",
        *["-u", "30", "-r", "30", "-t", "15s", "--calls", "1", "--attach", "dist"],
        *["--harness-reports-dir", str(tmp_path), "--harness-run-dir", str(run_dir)],
    ]
    # each worker in a directory of its own, as on another machine: nothing is shared but the master's port
    homes = [tmp_path / f"worker-{i}" for i in range(2)]
    workers = []
    try:
        master = subprocess.Popen(master_argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for home in homes:
            home.mkdir()
            argv = [sys.executable, "-m", "locust", "-f", SCENARIO, "--worker", "--master-host", "127.0.0.1"]
            workers.append(
                subprocess.Popen(
                    [*argv, "--master-port", str(port)],
                    cwd=home,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
        out, _ = master.communicate(timeout=150)
        worker_out = [w.communicate(timeout=60)[0] for w in workers]
    finally:
        for proc in [*workers, *([master] if "master" in locals() else [])]:
            if proc.poll() is None:
                proc.kill()
        down = run([*HARNESS, "down", "--name", "dist", *reports])
    assert master.returncode == 0, out[-4000:]
    assert out.count("as expected") == 1 and out.count("check       measured") == 1  # one verdict
    assert not any("check       measured" in text for text in worker_out)  # the workers judge nothing
    assert all(not list(home.iterdir()) for home in homes)  # and write nothing: their records went by message
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["verdict"] == "as expected"
    assert {k: v["measured"] for k, v in summary["checks"].items()} == {
        "continuity": "pass",
        "affinity": "pass",
        "balance": "pass",
    }
    load = summary["load"]
    assert load["workers"] == 2 and load["processes"] == 3
    w0, w1 = records(run_dir, "w0"), records(run_dir, "w1")
    assert load["sessions_per_process"] == {"w0": len(w0), "w1": len(w1)}
    assert w0 and w1 and summary["sessions"] == len(w0) + len(w1)
    # a disjoint slice of clients and source addresses each; together the 30 clients of one process
    clients = [{r["client"] for r in rs} for rs in (w0, w1)]
    sources = [{r["source"] for r in rs} for rs in (w0, w1)]
    assert not clients[0] & clients[1] and not sources[0] & sources[1]
    assert clients[0] | clients[1] == {f"c{i}" for i in range(30)}
    assert "workers 2" in (run_dir / "report.html").read_text(encoding="utf-8")
    assert down.returncode == 0, down.stdout + down.stderr
    assert find_run_processes(info["run_id"]) == {}


def test_locust_processes_bring_up_one_cluster_and_print_one_verdict(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    argv = [*LOCUST, "--processes", "2", "-u", "30", "-r", "30", "-t", "12s", "--calls", "1"]
    done = run([*argv, "--topology", "nginx-hash", "--seed", "12", "--harness-run-dir", str(run_dir)])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = done.stdout + done.stderr
    assert text.count("up: 3 app pods") == 1 and text.count("check       measured") == 1
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["verdict"] == "as expected" and summary["load"]["workers"] == 2
    assert all(n > 0 for n in summary["load"]["sessions_per_process"].values())
    assert find_run_processes(summary["run_id"]) == {}


def test_two_load_processes_still_catch_a_topology_built_to_fail(tmp_path: Path) -> None:
    """The negative control: no-affinity breaks continuity, and each worker's own clients see it."""
    argv = [*HARNESS, "run", "--topology", "no-affinity", "--processes", "2", "--users", "20", "--spawn-rate", "20"]
    done = run([*argv, "--duration", "12s", "--calls", "1", "--seed", "11", "--reports-dir", str(tmp_path)])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]  # failed, as expected
    run_dir = (tmp_path / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["checks"]["continuity"]["measured"] == "fail"
    assert summary["load"]["workers"] == 2
    for name in ("w0", "w1"):
        broken = [r for r in records(run_dir, name) if len(r["pods"]) > 1 or r["sticky_failures"]]
        assert broken, f"{name} saw no broken session"
