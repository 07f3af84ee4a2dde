"""``locust -f scenarios/sticky.py`` as users run it: bringing a topology up itself, and attached to a cluster of
``harness up``. Its exit code is the verdict's: 0 when the measured verdict equals the topology's expected one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster.local.processes import find_run_processes

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only")]

ROOT = Path(__file__).resolve().parents[2]
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "scenarios" / "sticky.py"), "--headless"]


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def test_locust_brings_a_topology_up_judges_it_and_takes_it_down(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    swarm_args = ["-u", "20", "-r", "20", "-t", "15s", "--topology", "no-affinity", "--seed", "11", "--calls", "1"]
    done = run([*LOCUST, *swarm_args, "--harness-run-dir", str(run_dir)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]  # no-affinity failed, as expected
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["checks"]["continuity"]["measured"] == "fail"
    assert "as expected" in done.stdout
    assert find_run_processes(summary["run_id"]) == {}


def test_locust_attached_to_harness_up(tmp_path: Path) -> None:
    harness = [sys.executable, "-m", "harness.cli"]
    reports = ["--reports-dir", str(tmp_path)]
    up = run([*harness, "up", "--topology", "nginx-hash", "--name", "e2e", "--seed", "12", *reports])
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = run([*harness, "status", "--name", "e2e", "--json", *reports])
        info = json.loads(status.stdout)
        assert all(info["processes"].values())
        swarm_args = ["-u", "20", "-r", "20", "-t", "20s", "--attach", "e2e", "--calls", "1"]
        done = run(
            [*LOCUST, *swarm_args, "--harness-reports-dir", str(tmp_path), "--harness-run-dir", str(tmp_path / "swarm")]
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        summary = json.loads((tmp_path / "swarm" / "summary.json").read_text())
        assert {k: v["measured"] for k, v in summary["checks"].items()} == {
            "continuity": "pass",
            "affinity": "pass",
            "balance": "pass",
        }
    finally:
        down = run([*harness, "down", "--name", "e2e", *reports])
    assert down.returncode == 0, down.stdout + down.stderr
    assert find_run_processes(info["run_id"]) == {}
    again = run([*harness, "status", "--name", "e2e", *reports])
    assert again.returncode == 2 and "no cluster named 'e2e'" in again.stderr


def test_locust_takes_the_session_length(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    swarm_args = ["-u", "20", "-r", "20", "-t", "20s", "--topology", "nginx-hash", "--seed", "12", "--calls", "1"]
    done = run([*LOCUST, *swarm_args, "--session-length", "4s", "--harness-run-dir", str(run_dir)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["session_length_s"] == 4.0
    lengths = [
        r["ended"] - r["started"]
        for path in run_dir.glob("sessions-*.jsonl")
        for r in map(json.loads, path.read_text().splitlines())
        if not r["stopped"] and not r["error"]
    ]
    assert lengths and min(lengths) >= 4.0  # every session that ran its course lived its length
    assert summary["checks"]["affinity"]["figures"]["affinity_run"] == 3  # judged over fewer, longer sessions
    assert summary["checks"]["affinity"]["measured"] == "pass"
