"""When the harness's own machinery fails, the run is not judged: exit 2, one line saying what failed, and a
summary that says "not judged". Shown with an event that cannot take effect and with the network daemon killed
mid-run, next to the same runs left alone (which are judged)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.cluster.local.processes import find_run_processes

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only")]

ROOT = Path(__file__).resolve().parents[2]
# the reference app, except that pods started after the first three die at once: a scale-up that cannot happen
APP = (
    "import os, runpy, sys\n"
    "if int(os.environ['POD_NAME'].split('-')[1]) >= 3: print('refusing to start'); sys.exit(3)\n"
    "sys.argv = ['harness.app']; runpy.run_module('harness.app', run_name='__main__')\n"
)


def harness_run(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    argv = [sys.executable, "-m", "harness.cli", "run", "--users", "10", "--calls", "1", "--seed", "12"]
    proc = subprocess.Popen(
        [*argv, "--reports-dir", str(tmp_path), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, []


def until_up(proc: subprocess.Popen[str], lines: list[str]) -> str:
    """Read the run's output until the cluster is up; the run id."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("up:"):
            break
    return next(x for x in lines if x.startswith("run ")).split()[1].rstrip(":")


def finish(proc: subprocess.Popen[str], lines: list[str]) -> str:
    out, _ = proc.communicate(timeout=120)
    return "".join(lines) + out


def balancer_of(run_id: str) -> int:
    """The pid of the network daemon's balancer part (the nodes part is another process)."""
    parts = {
        pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        for pid in find_run_processes(run_id)
        if b"harness.net.netd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }
    assert sorted(argv[argv.index(b"--part") + 1] for argv in parts.values()) == [b"lb", b"nodes"]
    (pid,) = [pid for pid, argv in parts.items() if argv[argv.index(b"--part") + 1] == b"lb"]
    return pid


def summary_of(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / "latest" / "summary.json").read_text())
    return data


@pytest.mark.parametrize("scale_to", [5, 3])
def test_an_event_that_cannot_take_effect_is_not_judged(tmp_path: Path, scale_to: int) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    proc, lines = harness_run(
        tmp_path,
        "--duration",
        "14s",
        "--app-cmd",
        f"{sys.executable} {script}",
        "--events",
        f"4s scale app {scale_to}",
        "--topology",
        "nginx-hash",
    )
    out = finish(proc, lines)
    summary = summary_of(tmp_path)
    if scale_to == 3:  # the control: nothing to start, the event takes effect and the run is judged
        assert proc.returncode in (0, 1) and summary["verdict"] != "not judged", out
        return
    assert proc.returncode == 2, out
    (line,) = [x for x in out.splitlines() if x.startswith("NOT JUDGED")]
    assert "event 4s scale app 5 did not take effect" in line and "app-3 exited at start" in line
    assert "stopping the swarm" in out  # it did not swarm on against a cluster nobody meant
    assert summary["verdict"] == "not judged" and summary["exit_code"] == 2
    assert summary["harness_failure"] and "refusing to start" in str(summary["harness_failure"])
    assert find_run_processes(str(summary["run_id"])) == {}


def test_the_network_daemon_dying_is_not_judged(tmp_path: Path) -> None:
    proc, lines = harness_run(tmp_path, "--duration", "20s", "--topology", "no-affinity")
    run_id = until_up(proc, lines)
    netd = balancer_of(run_id)
    threading.Timer(3.0, os.kill, args=(netd, signal.SIGKILL)).start()
    started = time.monotonic()
    out = finish(proc, lines)
    assert proc.returncode == 2, out
    assert "UNPLANNED" in out and "netd exited" in out
    assert "NOT JUDGED: the harness's netd exited during the run (killed by signal 9)" in out
    assert time.monotonic() - started < 17  # stopped early, not swarmed to the end
    summary = summary_of(tmp_path)
    assert summary["verdict"] == "not judged"
    assert [u["what"] for u in summary["unplanned"]] == ["netd"]  # type: ignore[index]
    assert find_run_processes(run_id) == {}


def test_the_load_generator_dying_is_not_judged(tmp_path: Path) -> None:
    proc, lines = harness_run(tmp_path, "--duration", "20s", "--topology", "no-affinity")
    run_id = until_up(proc, lines)
    deadline = time.monotonic() + 10
    locust: list[int] = []
    while not locust and time.monotonic() < deadline:
        time.sleep(0.2)
        locust = [p for p in find_run_processes(run_id) if b"locust" in Path(f"/proc/{p}/cmdline").read_bytes()]
    threading.Timer(3.0, os.kill, args=(locust[0], signal.SIGKILL)).start()
    out = finish(proc, lines)
    assert proc.returncode == 2, out
    (line,) = [x for x in out.splitlines() if x.startswith("NOT JUDGED")]
    assert "the load generator (locust) exited during the run (killed by signal 9)" in line
    assert summary_of(tmp_path)["verdict"] == "not judged"
    assert find_run_processes(run_id) == {}


@pytest.mark.parametrize("starved", [True, False])
def test_the_network_daemon_out_of_descriptors_is_not_judged(tmp_path: Path, starved: bool) -> None:
    """Clients of a balancer that cannot open sockets see resets the checks would blame on the topology: the run
    is not judged. The control, the same run with the daemon's limit left alone, is judged as expected, and the
    daemon held more descriptors in it than the starved one was allowed."""
    args = ["--duration", "18s", "--topology", "nginx-hash", "--clients", "websocket", "--session-length", "4s"]
    proc, lines = harness_run(tmp_path, *args, "--users", "40")
    run_id = until_up(proc, lines)
    netd = balancer_of(run_id)
    allowed = len(os.listdir(f"/proc/{netd}/fd")) + 40  # room for 20 of the 40 sessions (2 descriptors each)
    if starved:
        hard = resource.prlimit(netd, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(netd, resource.RLIMIT_NOFILE, (allowed, hard))
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], len(os.listdir(f"/proc/{netd}/fd")))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    out = finish(proc, lines)
    summary = summary_of(tmp_path)
    assert find_run_processes(run_id) == {}
    if not starved:
        assert proc.returncode == 0 and summary["verdict"] == "as expected", out
        assert peak[0] > allowed  # the starved run's limit would have been hit
        return
    assert proc.returncode == 2, out
    (line,) = [x for x in out.splitlines() if x.startswith("NOT JUDGED")]
    assert "the network daemon (netd) ran out of file descriptors" in line, line
    assert "stopping the swarm" in out
    assert summary["verdict"] == "not judged"
    assert "file descriptors" in str(summary["harness_failure"])
