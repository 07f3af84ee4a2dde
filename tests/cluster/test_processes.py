"""Process lifetimes: a process the harness starts lives until the harness stops it, whichever thread started
it, and dies with the harness all the same.

Linux sends the parent-death signal when the *thread* that forked a child ends, not the process; the first test
shows that this is what kills a child forked from a short-lived thread (the negative control), the next that
`spawn` does not let it happen, and the last that a child still dies when the harness itself is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from harness.cluster.local.processes import ManagedProcess, find_run_processes, kill_group, spawn


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def _in_a_thread_that_ends(work: callable) -> object:  # type: ignore[valid-type]
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join()
    return out[0]


def test_the_parent_death_signal_follows_the_forking_thread() -> None:
    """The negative control: a child armed with PR_SET_PDEATHSIG from a thread dies when that thread ends."""

    def arm() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)

    child = _in_a_thread_that_ends(lambda: subprocess.Popen(["sleep", "30"], preexec_fn=arm))
    assert isinstance(child, subprocess.Popen)
    try:
        assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        child.kill()


def test_a_process_spawned_from_a_thread_that_ends_lives_until_stopped(tmp_path: Path) -> None:
    run_id = f"test-{os.getpid()}-thread"
    process = _in_a_thread_that_ends(
        lambda: spawn("sleeper", ["sleep", "30"], run_id=run_id, log_path=tmp_path / "sleeper.log")
    )
    assert isinstance(process, ManagedProcess)
    try:
        time.sleep(1.0)  # long enough for a parent-death signal to have arrived
        assert process.alive() and process.exit_status() is None
        assert find_run_processes(run_id) == {process.pid: run_id}
    finally:
        process.stop(grace=1.0)
    assert not process.alive() and process.stopping


def test_a_spawned_process_dies_with_the_harness(tmp_path: Path) -> None:
    """A harness process spawns a child from a short-lived thread and is then killed with SIGKILL: the child goes."""
    run_id = f"test-{os.getpid()}-sigkill"
    script = textwrap.dedent(
        f"""
        import threading, time
        from pathlib import Path
        from harness.cluster.local.processes import spawn
        out = []
        t = threading.Thread(target=lambda: out.append(
            spawn("sleeper", ["sleep", "60"], run_id={run_id!r}, log_path=Path({str(tmp_path / "s.log")!r}))))
        t.start(); t.join()
        print(out[0].pid, flush=True)
        time.sleep(60)
        """
    )
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None
        child = int(harness.stdout.readline())
        time.sleep(0.5)
        assert not _gone(child, 0.5), "the child should be alive while the harness is"
        harness.kill()
        harness.wait(5)
        assert _gone(child, 5.0), "the child outlived the harness"
        assert find_run_processes(run_id) == {}
    finally:
        harness.kill()
        harness.wait(5)
        if harness.stdout is not None:
            harness.stdout.close()
        for pid in find_run_processes(run_id):
            kill_group(pid, grace=0.5)


def test_spawned_processes_get_a_raised_open_files_limit(tmp_path: Path) -> None:
    """A harness started with a shell's 1,024 descriptors hands its processes a limit a big swarm can live with:
    the hard limit at least (root may raise that too); a process asked for less than it has keeps what it has."""
    script = textwrap.dedent(
        f"""
        import resource, sys, time
        from pathlib import Path
        from harness.cluster.local.processes import raise_open_files_limit, spawn
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert soft == 1024, soft
        assert raise_open_files_limit(512) == 1024  # never lowered
        log = Path({str(tmp_path / "probe.log")!r})
        probe = "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
        child = spawn("probe", [sys.executable, "-c", probe], run_id="rlimit-test", log_path=log, attached=False)
        child.popen.wait(10)
        print(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0], log.read_text().strip())
        """
    )

    def low_limit() -> None:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, preexec_fn=low_limit, check=True
    ).stdout.split()
    hard, own, child = (int(v) for v in out)
    assert own >= min(hard, 1 << 20) and own > 1024
    assert child == own


def test_the_last_sweep_stops_what_a_run_left_running_and_only_that_run(tmp_path: Path) -> None:
    from harness.cluster.local.processes import stop_spawned, stop_together

    mine = spawn("left", ["sleep", "60"], run_id="sweep-a", log_path=tmp_path / "a.log")
    stopped_on_purpose = spawn("done", ["sleep", "60"], run_id="sweep-a", log_path=tmp_path / "b.log")
    other = spawn("other", ["sleep", "60"], run_id="sweep-b", log_path=tmp_path / "c.log")
    try:
        stopped_on_purpose.stop(grace=1.0)
        assert mine.alive() and other.alive()
        assert stop_spawned("sweep-a") == ["left"]  # the one nobody stopped; the stopped one is not news
        assert not mine.alive() and other.alive()  # another run's process is not this sweep's
        assert stop_spawned("sweep-a") == []
    finally:
        stop_together([mine, other], grace=1.0)
    assert not other.alive()
