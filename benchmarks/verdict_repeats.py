"""Each local topology swarmed several times on fresh clusters with fresh seeds: how often is its verdict false?

A verdict that holds for one seed may rest on luck (DESIGN.md, "Luck"). This runs every topology of the local
matrix (and the client-address variants the topologies declare) ``--repeat`` times, each on a new cluster with
seed ``--first-seed + i``, the way the e2e tests swarm them (45 clients, one call per session), and counts the runs
whose measured verdict differs from the expected one.

    .venv/bin/python benchmarks/verdict_repeats.py [--repeat 5] [--duration 30] [--first-seed 100] [--only nginx-hash]

Reports go to a temporary directory unless ``--reports-dir`` is given. Exit code 0 when every run's verdict was
the expected one, 1 when any was not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from harness.runner import BackendOptions, SwarmOptions, run_topology
from harness.topology import load_topology

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=45)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--only", action="append", default=[], help="topology name (repeatable)")
    parser.add_argument("--reports-dir", type=Path, default=None)
    args = parser.parse_args()
    reports = args.reports_dir or Path(tempfile.mkdtemp(prefix="verdict-repeats-"))
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
