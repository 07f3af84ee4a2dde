"""Each local topology swarmed several times on fresh clusters with fresh seeds: how often is its verdict false?

A verdict that holds for one seed may rest on luck (DESIGN.md, "Luck"). This runs every topology of the local
matrix (and the client-address variants the topologies declare) ``--repeat`` times, each on a new cluster with
seed ``--first-seed + i``, the way the e2e tests swarm them (45 clients, one call per session), and counts the runs
whose measured verdict differs from the expected one.

    .venv/bin/python benchmarks/verdict_repeats.py [--repeat 5] [--duration 30] [--first-seed 100] [--only nginx-hash]

With ``--scaling`` it runs the scaling scenarios instead: one event per run, long sessions (the scenarios of
tests/e2e/test_scaling.py). A scaling run's verdict is false when a judged check differs from the topology's
expectation, when the harness could not judge it (an event that did not take effect, an exit nobody asked for),
or when the event's figures miss what the strategy promises (clients moved against the minimum, broken live
sessions, new pods carrying sessions or, for the seed recipe, alive and starved).

    .venv/bin/python benchmarks/verdict_repeats.py --scaling [--repeat 5] [--only nginx-hash-up]

Reports go to a temporary directory unless ``--reports-dir`` is given. Exit code 0 when every run's verdict was
the expected one, 1 when any was not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.lifecycle import BackendOptions, SwarmOptions, run_topology
from harness.topology import Topology, load_topology

# (topology, client addresses): the local matrix of tests/e2e, the flaws the address modes are there to show
MATRIX = [
    ("no-affinity", "unique"),
    ("nginx-hash", "unique"),
    ("seed", "unique"),
    ("nginx-ip-hash", "unique"),
    ("nginx-ip-hash", "shared-24"),
    ("haproxy-cookie", "unique"),
    ("clientip-local", "unique"),
    ("nlb-sticky-local", "unique"),
    ("websocket-only", "unique"),
]


Problems = Callable[[dict[str, Any]], list[str]]


def _replicas(name: str, app: int) -> Topology:
    topology = load_topology(name)
    return topology.model_copy(update={"app": topology.app.model_copy(update={"replicas": app})})


def _moved_about_the_minimum(e: dict[str, Any]) -> list[str]:
    n, minimum, moved = e["clients_compared"], e["minimum_remap"], e["clients_remapped"]
    if not 0.6 * minimum <= moved <= minimum + max(2, n // 10):
        return [f"moved {moved} of {n}, minimum {minimum}"]
    return []


def _hash_up(e: dict[str, Any]) -> list[str]:
    out = _moved_about_the_minimum(e)
    if not e["sessions_on_new_pods"]:
        out.append("new pods carried no session")
    if not e["broken"].get("wrong_pod"):
        out.append("no live polling session of a moved client broke")
    if e["recovered"] != e["disrupted_sessions"]:
        out.append(f"{e['disrupted_sessions'] - e['recovered']} broken sessions never recovered")
    return out


def _cookie_up(e: dict[str, Any]) -> list[str]:
    out = []
    if e["disrupted_sessions"]:
        out.append(f"{e['disrupted_sessions']} live sessions broke")
    if e["clients_remapped"]:
        out.append(f"{e['clients_remapped']} clients with a cookie moved")
    if not e["sessions_on_new_pods"]:
        out.append("no new client reached the new pods")
    return out


def _seed_up(e: dict[str, Any]) -> list[str]:
    out = []
    if e["sessions_on_new_pods"]:
        out.append(f"new pods got {e['sessions_on_new_pods']} sessions")
    if e["unreached"] != e["added"]:
        out.append(f"new pods not shown alive and starved: {e['observed']}")
    if not e["why"]:
        out.append("no explanation for the starved pods")
    return out


def _down(e: dict[str, Any]) -> list[str]:
    out = []
    if not e["disrupted_sessions"]:
        out.append("no session of the removed pods broke")
    if e["recovered"] != e["disrupted_sessions"]:
        out.append(f"{e['disrupted_sessions'] - e['recovered']} broken sessions never recovered")
    return out


def _replaced(e: dict[str, Any]) -> list[str]:
    out = _down(e)
    if not e["sessions_on_new_pods"]:
        out.append("replacement pods carried no session")
    return out


@dataclass(frozen=True)
class Scaling:
    name: str
    topology: Callable[[], Topology]
    events: str
    duration: float
    problems: Problems
    spawn_rate: float = 45
    users: int = 45
    session_length: float = 6.0


SCALING = [  # as in tests/e2e/test_scaling.py
    Scaling("nginx-hash-up", lambda: load_topology("nginx-hash"), "10s scale app 6", 32, _hash_up),
    Scaling("haproxy-cookie-up", lambda: load_topology("haproxy-cookie"), "8s scale app 6", 30, _cookie_up, 2, 40),
    Scaling("seed-up", lambda: load_topology("seed"), "8s scale app 5", 22, _seed_up, 45, 40, 4.0),
    Scaling("nginx-hash-down", lambda: _replicas("nginx-hash", 6), "10s scale app 3", 28, _down),
    Scaling("nginx-hash-kill", lambda: load_topology("nginx-hash"), "8s kill app", 24, _replaced, 45, 40),
    Scaling("nginx-hash-restart", lambda: load_topology("nginx-hash"), "8s restart app", 24, _replaced, 45, 40),
]


def scaling_main(args: argparse.Namespace, reports: Path) -> int:
    from harness.events import parse_events

    rows = []
    for scenario in SCALING:
        if args.only and scenario.name not in args.only:
            continue
        for i in range(args.repeat):
            seed = args.first_seed + i
            topology = scenario.topology()
            options = SwarmOptions(
                users=args.scaling_users or scenario.users,
                spawn_rate=scenario.spawn_rate,
                duration=scenario.duration,
                calls=2,
                session_length=scenario.session_length,
                modes=topology.clients.modes,
                progress_every=1000,
            )
            judgement = run_topology(
                topology,
                options,
                seed=seed,
                reports_dir=reports,
                backend=BackendOptions(),
                echo=lambda _: None,
                events=parse_events(scenario.events),
            )
            summary = judgement.summary
            false = [f"{c} {v['measured']}" for c, v in summary["checks"].items() if not v["matches"]]
            false += [f"not judged: {summary['harness_failure']}"] if summary["harness_failure"] else []
            false += [u["reading"] for u in summary["unplanned"]]
            (event,) = summary["events"] or [None]
            false += scenario.problems(event) if event is not None else ["no event report"]
            rows.append({"scenario": scenario.name, "seed": seed, "false": false, "event": event})
            figures = (
                f"live {event['live_at_event']}, broken {event['disrupted_sessions']} {event['broken']}, "
                f"moved {event['clients_remapped']}/{event['clients_compared']} (min {event['minimum_remap']}), "
                f"reconnect p50 {event['reconnect_s']['p50']} s, on new pods {event['sessions_on_new_pods']}, "
                f"half share {event['new_pods_half_share_s']} s"
                if event
                else ""
            )
            print(
                f"{scenario.name:19} seed {seed:4}  {figures}  "
                f"{'FALSE: ' + '; '.join(false) if false else 'as expected'}",
                flush=True,
            )
    print()
    print(f"{'scenario':19} runs  false verdicts")
    for name in dict.fromkeys(r["scenario"] for r in rows):
        mine = [r for r in rows if r["scenario"] == name]
        print(f"{name:19} {len(mine):4}  {sum(bool(r['false']) for r in mine)}")
    (reports / "verdict-repeats-scaling.json").write_text(json.dumps(rows, indent=1))
    print(f"\nrecords: {reports / 'verdict-repeats-scaling.json'}")
    return 1 if any(r["false"] for r in rows) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=45)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--only", action="append", default=[], help="topology name (repeatable)")
    parser.add_argument("--reports-dir", type=Path, default=None)
    parser.add_argument("--scaling", action="store_true", help="the scaling scenarios (one event, long sessions)")
    parser.add_argument(
        "--scaling-users", type=int, default=None, help="clients of each scaling run (default: its own)"
    )
    args = parser.parse_args()
    reports = args.reports_dir or Path(tempfile.mkdtemp(prefix="verdict-repeats-"))
    if args.scaling:
        return scaling_main(args, reports)
    rows = []
    for name, addresses in MATRIX:
        if args.only and name not in args.only:
            continue
        topology = load_topology(name)
        expected = topology.expected_verdicts(addresses)
        for i in range(args.repeat):
            seed = args.first_seed + i
            options = SwarmOptions(
                users=args.users,
                spawn_rate=args.users,
                duration=args.duration,
                calls=1,
                client_addresses=addresses,
                modes=topology.clients.modes,
                progress_every=1000,
            )
            started = time.monotonic()
            judgement = run_topology(
                topology, options, seed=seed, reports_dir=reports, backend=BackendOptions(), echo=lambda _: None
            )
            checks = judgement.summary["checks"]
            measured = {check: checks[check]["measured"] for check in expected}
            # the summary's expectation: the topology's, for these client addresses, and for a converged run
            false = sorted(check for check in expected if not checks[check]["matches"])
            converged = bool(judgement.summary["expected_with_converged"])
            balance = checks.get("balance", {}).get("figures", {})
            rows.append(
                {
                    "topology": name,
                    "clients": addresses,
                    "seed": seed,
                    "measured": measured,
                    "false": false,
                    "converged": converged,
                    "max_mean": balance.get("max_mean_ratio"),
                    "chance": balance.get("chance"),
                    "seconds": round(time.monotonic() - started, 1),
                    "report": judgement.summary["report_dir"],
                }
            )
            row = rows[-1]
            verdict = " ".join(f"{c}={v}" for c, v in measured.items())
            print(
                f"{name:17} {addresses:9} seed {seed:4}  {verdict:45} "
                f"max/mean {row['max_mean'] or 0:.2f} chance {row['chance'] or 0:.2g}  "
                f"{'FALSE: ' + ', '.join(false) if false else 'as expected'}{' (converged)' if converged else ''}",
                flush=True,
            )
    print()
    print(f"{'topology':17} {'clients':9} runs  false verdicts")
    for name, addresses in dict.fromkeys((r["topology"], r["clients"]) for r in rows):
        mine = [r for r in rows if (r["topology"], r["clients"]) == (name, addresses)]
        print(f"{name:17} {addresses:9} {len(mine):4}  {sum(bool(r['false']) for r in mine)}")
    (reports / "verdict-repeats.json").write_text(json.dumps(rows, indent=1))
    print(f"\nrecords: {reports / 'verdict-repeats.json'}")
    return 1 if any(r["false"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
