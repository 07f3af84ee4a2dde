"""A real Ctrl-C (typed into the command's terminal) or SIGTERM at the moments a run goes through: start-up, swarm,
an event, judging, a second Ctrl-C during clean-up. Each time: exit 130 (143 for SIGTERM), one line said, a
summary marked interrupted with what was measured so far, and nothing left: no process of the run, no loopback
listener, no control socket, no temporary file. (A hundred random moments: ``benchmarks/interrupts.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interrupting import HARNESS, Outcome, interrupt

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only")]

RUN = ["run", "--topology", "haproxy-cookie", "--users", "40", "--duration", "20s", "--events", "5s scale app 5"]


def _run(tmp_path: Path, at: float, run: list[str] = RUN, **kwargs: object) -> Outcome:
    reports = tmp_path / "reports"
    return interrupt([*HARNESS, *run, "--reports-dir", str(reports)], at, reports_dir=reports, **kwargs)  # type: ignore[arg-type]


def _stopped_cleanly(outcome: Outcome, code: int = 130, signal: str = "SIGINT") -> None:
    assert outcome.code == code, outcome.output[-3000:]
    assert not outcome.leftovers, outcome.leftovers.describe()
    said = [line for line in outcome.lines_after if "interrupted" in line]
    assert len(said) == 1 and f"interrupted ({signal})" in said[0], outcome.lines_after
    assert "Traceback" not in outcome.output, outcome.output[-3000:]


def test_ctrl_c_during_start_up_stops_everything(tmp_path: Path) -> None:
    outcome = _run(tmp_path, 0.0, after=r"^run \d{8}-")  # the run has begun bringing its cluster up
    _stopped_cleanly(outcome)
    assert outcome.run_id is not None and outcome.summary is not None
    assert outcome.summary["interrupted"] == "SIGINT" and outcome.summary["verdict"] == "interrupted"
    assert outcome.summary["exit_code"] == 130


def test_ctrl_c_during_the_swarm_keeps_what_was_measured(tmp_path: Path) -> None:
    outcome = _run(tmp_path, 3.0, after=r"^up: ")
    _stopped_cleanly(outcome)
    assert outcome.summary is not None and outcome.summary["verdict"] == "interrupted"
    # the swarm ran three seconds before the interrupt: sessions were measured and are in the summary
    assert isinstance(outcome.summary["sessions"], int) and outcome.summary["sessions"] > 0
    assert "sessions measured so far" in outcome.lines_after[-1]
    # the report says it too
    assert outcome.run_id is not None
    page = (tmp_path / "reports" / outcome.run_id / "report.html").read_text(encoding="utf-8")
    assert "INTERRUPTED" in page


def test_ctrl_c_just_after_an_event_fired(tmp_path: Path) -> None:
    outcome = _run(tmp_path, 0.3, after=r"^event 5s scale app 5 done")
    _stopped_cleanly(outcome)
    assert outcome.summary is not None and outcome.summary["verdict"] == "interrupted"


def test_ctrl_c_while_judging(tmp_path: Path) -> None:
    short = ["run", "--topology", "haproxy-cookie", "--users", "20", "--duration", "4s"]  # to the judging, soon
    outcome = _run(tmp_path, 0.0, short, after=r"^swarm over: judging")
    _stopped_cleanly(outcome)
    assert outcome.summary is not None and outcome.summary["interrupted"] == "SIGINT"


def test_sigterm_stops_like_ctrl_c_with_143(tmp_path: Path) -> None:
    outcome = _run(tmp_path, 2.0, after=r"^up: ", how="sigterm")
    _stopped_cleanly(outcome, code=143, signal="SIGTERM")
    assert outcome.summary is not None and outcome.summary["exit_code"] == 143


def test_a_second_ctrl_c_during_clean_up_leaves_nothing_either(tmp_path: Path) -> None:
    outcome = _run(tmp_path, 2.0, after=r"^up: ", again_after=0.2)
    _stopped_cleanly(outcome)
    assert any("still stopping" in line for line in outcome.lines_after) or outcome.seconds_to_exit < 0.2


def test_ctrl_c_during_harness_up_stops_what_it_had_started(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    argv = [*HARNESS, "up", "--topology", "nginx-hash", "--name", "ctrlc", "--reports-dir", str(reports)]
    outcome = interrupt(argv, 0.4, after=r"^bringing up cluster ctrlc", reports_dir=reports)
    _stopped_cleanly(outcome)
    assert not (reports / "clusters" / "ctrlc" / "cluster.json").exists()


LOCUST = [str(Path(HARNESS[0]).with_name("python")), "-m", "locust", "-f", "scenarios/sticky.py", "--headless"]


def _locust(tmp_path: Path, at: float, **kwargs: object) -> Outcome:
    reports = tmp_path / "reports"
    argv = [*LOCUST, "-u", "30", "-t", "25s", "--topology", "nginx-hash", "--harness-reports-dir", str(reports)]
    return interrupt(argv, at, reports_dir=reports, **kwargs)  # type: ignore[arg-type]


def test_ctrl_c_of_the_locust_entry_during_the_swarm(tmp_path: Path) -> None:
    outcome = _locust(tmp_path, 3.0, after=r"^up: ")
    assert outcome.code == 130, outcome.output[-3000:]
    assert not outcome.leftovers, outcome.leftovers.describe()
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    assert sum("interrupted (SIGINT)" in line for line in outcome.lines_after) == 1
    assert outcome.summary is not None and outcome.summary["verdict"] == "interrupted"
    assert isinstance(outcome.summary["sessions"], int) and outcome.summary["sessions"] > 0


def test_sigterm_of_the_locust_entry_during_its_bring_up(tmp_path: Path) -> None:
    outcome = _locust(tmp_path, 0.0, after=r"^run \d{8}-", how="sigterm")
    assert outcome.code == 143, outcome.output[-3000:]
    assert not outcome.leftovers, outcome.leftovers.describe()
    assert outcome.summary is not None and outcome.summary["interrupted"] == "SIGTERM"


def test_sigterm_of_a_pytest_e2e_session_takes_its_clusters_down(tmp_path: Path) -> None:
    python = str(Path(HARNESS[0]).with_name("python"))
    argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "e2e", "--e2e-duration", "20s"]
    argv += ["--topology", "nginx-hash", "--reports-dir", str(tmp_path / "e2e"), "tests/e2e/test_local_swarm.py"]
    argv += ["-k", "test_verdict_equals_expected", "-s"]
    outcome = interrupt(argv, 6.0, how="sigterm", reports_dir=tmp_path / "e2e")  # collected, the run under way
    assert outcome.code == 143, outcome.output[-3000:]
    assert not outcome.leftovers, outcome.leftovers.describe()
    runs = [p for p in (tmp_path / "e2e").glob("*/summary.json") if not p.parent.is_symlink()]
    assert len(runs) == 1 and '"interrupted": "SIGTERM"' in runs[0].read_text(encoding="utf-8")


def test_sigkill_of_the_harness_takes_its_processes_with_it(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    from harness.cluster.local.processes import find_run_processes

    reports = tmp_path / "reports"
    argv = [*HARNESS, *RUN, "--reports-dir", str(reports)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=Path(HARNESS[0]).parents[2]
    )
    assert proc.stdout is not None
    run_id = None
    for line in proc.stdout:
        if line.startswith("run "):
            run_id = line.split()[1].rstrip(":")
        if line.startswith("up: "):
            break
    assert run_id is not None
    alive = find_run_processes(run_id)
    assert len(alive) >= 5  # the network daemon, the tier, the app pods, Locust: all up when the harness dies
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 10
    while find_run_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert find_run_processes(run_id) == {}  # the kernel's parent-death signal stopped each of them


def test_processes_an_earlier_run_left_are_named_by_the_next_run_and_reaped(tmp_path: Path) -> None:
    import os
    import subprocess
    import time

    from harness.cluster.local.processes import find_orphans

    gone = subprocess.Popen(["true"])
    gone.wait()  # a harness process that no longer exists
    env = dict(os.environ, HARNESS_RUN_ID="20200101-000000-left-behind-abcd", HARNESS_OWNER_PID=str(gone.pid))
    left = subprocess.Popen(["sleep", "120"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10  # until the child has exec'd, /proc shows the parent's environment
        while left.pid not in find_orphans() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left.pid in find_orphans()
        reports = tmp_path / "reports"
        run = [*HARNESS, "run", "--topology", "nginx-hash", "--users", "5", "--duration", "2s"]
        done = subprocess.run([*run, "--reports-dir", str(reports)], capture_output=True, text=True, timeout=120)
        assert "1 processes of earlier runs whose harness is gone are still running" in done.stdout, done.stdout
        assert "harness down --all" in done.stdout
        assert left.poll() is None  # said, not touched: the user decides
        down = subprocess.run(
            [*HARNESS, "down", "--all", "--reports-dir", str(reports)], capture_output=True, text=True
        )
        assert down.returncode == 0, down.stdout + down.stderr
        assert left.wait(timeout=10) is not None and left.pid not in find_orphans()
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()
