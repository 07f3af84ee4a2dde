"""The same options give the same run whichever entry makes it: ``harness run`` and ``locust -f scenarios/sticky.py
--topology``. Each case is an option that changes what a run is judged against.

The Locust side runs in a child process: importing locust monkey-patches the standard library with gevent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness import lifecycle
from harness.cli import cli
from harness.runs import Judgement

ROOT = Path(__file__).resolve().parent.parent

LOCUST_SPEC = """
import json, sys, types
import harness.swarm as swarm
from locust.argument_parser import parse_options
import scenarios.sticky as sticky

options = parse_options(args=sys.argv[1:])
env = types.SimpleNamespace(user_classes=[sticky.PollingClient, sticky.UpgradingClient, sticky.WebSocketClient])
spec = swarm.swarm_spec(env, options)
print(json.dumps({**spec.judged_by(), "users": spec.options.users, "duration": spec.options.duration,
                  "spawn_rate": spec.options.spawn_rate, "processes": spec.options.processes}))
"""

# (harness run options, the same for locust), after --topology
CASES = {
    "defaults": (["--topology", "nginx-hash"], ["--topology", "nginx-hash"]),
    "shared-24": (
        ["--topology", "nginx-ip-hash", "--client-addresses", "shared-24"],
        ["--topology", "nginx-ip-hash", "--client-addresses", "shared-24"],
    ),
    "single": (
        ["--topology", "nginx-ip-hash", "--client-addresses", "single"],
        ["--topology", "nginx-ip-hash", "--client-addresses", "single"],
    ),
    "session-length": (
        ["--topology", "nginx-hash", "--session-length", "10s"],
        ["--topology", "nginx-hash", "--session-length", "10s"],
    ),
    "events": (
        ["--topology", "nginx-hash", "--events", "12s scale app 6"],
        ["--topology", "nginx-hash", "--events", "12s scale app 6"],
    ),
    "kinds of client": (
        ["--topology", "no-affinity", "--clients", "websocket"],
        ["--topology", "no-affinity", "WebSocketClient"],
    ),
    "the topology's kinds": (["--topology", "websocket-only"], ["--topology", "websocket-only"]),
    "calls": (["--topology", "haproxy-cookie", "--calls", "7"], ["--topology", "haproxy-cookie", "--calls", "7"]),
}


def from_harness_run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    specs: list[lifecycle.RunSpec] = []

    def execute(spec: lifecycle.RunSpec, *, echo: Any = print) -> Judgement:
        specs.append(spec)
        return Judgement(summary={"report_dir": "r"}, text="", ok=True)

    monkeypatch.setattr(lifecycle, "execute", execute)
    common = ["--users", "30", "--duration", "40s", "--spawn-rate", "5"]
    result = CliRunner().invoke(cli, ["run", *argv, *common])
    assert result.exit_code == 0, result.output
    (spec,) = specs
    options = spec.options
    return {
        **spec.judged_by(),
        "users": options.users,
        "duration": options.duration,
        "spawn_rate": options.spawn_rate,
        "processes": options.processes,
    }


def from_locust(argv: list[str], *extra: str) -> dict[str, Any]:
    common = ["-f", "scenarios/sticky.py", "--headless", "-u", "30", "-t", "40s", "-r", "5", *extra]
    out = subprocess.run(
        [sys.executable, "-c", LOCUST_SPEC, *common, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    data["modes"] = tuple(data["modes"])
    return data


@pytest.mark.parametrize("case", list(CASES))
def test_harness_run_and_the_locust_entry_make_the_same_run(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cli_argv, locust_argv = CASES[case]
    mine = from_harness_run(cli_argv, monkeypatch)
    theirs = from_locust(locust_argv)
    assert mine == theirs
    assert mine["processes"] == 1


def test_the_cases_differ_from_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case changes what the run is judged by: a comparison that ignored an option would not notice."""
    seen = [json.dumps(from_harness_run(c, monkeypatch), sort_keys=True, default=list) for c, _ in CASES.values()]
    assert len(set(seen)) == len(CASES)


def test_a_locust_master_counts_its_workers() -> None:
    assert from_locust(["--topology", "nginx-hash"], "--master", "--expect-workers", "3")["processes"] == 3


STOP_WAKES = """
import json, sys
from locust.env import Environment
from locust.user.users import LOCUST_STATE_RUNNING
import scenarios.sticky as sticky

env = Environment(user_classes=[sticky.WebSocketClient])
user = sticky.WebSocketClient(env)
woken = []
user.client = type("Client", (), {"wake": lambda self: woken.append(True)})()
user._state = LOCUST_STATE_RUNNING
before = {"stopping": user._stopping(), "woken": len(woken)}
killed = user.stop()
print(json.dumps({"before": before, "killed": killed, "stopping": user._stopping(), "woken": len(woken)}))
"""


def test_a_graceful_stop_of_a_user_wakes_its_idle_session() -> None:
    """Locust's graceful stop (a ramp-down, the end of the run) wakes the session idling in run_session, which
    ticks only every few seconds: it sees the stop at once. Before the stop: not stopping, not woken."""
    out = subprocess.run(
        [sys.executable, "-c", STOP_WAKES], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"before": {"stopping": False, "woken": 0}, "killed": False, "stopping": True, "woken": 1}
