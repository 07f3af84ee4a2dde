"""Memory of judging a run, by the number of its sessions: the owner's growth per session.

Writes synthetic run directories (``--clients`` clients on 3 pods, sessions spread over ``--duration`` seconds,
a few of them broken so that every check has something to say), then judges each in a fresh Python process
(`harness.runs.judge`, which writes the summary and the report too) and reads that process's peak RSS. The
growth per session is the slope between the smallest and the largest run. ``--events`` adds a scale-up and a
pod kill to the timeline: such a run keeps a slimmed copy of each session for the scaling report.

    .venv/bin/python benchmarks/judge_memory.py                        # 10k, 50k, 200k sessions
    .venv/bin/python benchmarks/judge_memory.py --events --sizes 10000,50000
    .venv/bin/python benchmarks/judge_memory.py --source /path/to/other/checkout   # the same, judged by another tree

``--source`` judges with the ``harness`` package of another checkout (an older commit, for before / after).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.client.records import Mode, SessionRecord, write_session  # noqa: E402
from harness.events import EventRecord  # noqa: E402

T0 = 1_800_000_000.0
PODS = ["app-0", "app-1", "app-2"]

_JUDGE = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from harness.runs import judge
from harness.topology import load_topology
run_dir, pods = Path(sys.argv[2]), json.loads(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
judgement = judge(run_dir, load_topology("nginx-hash"), backend="local", pods=pods)
took = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "peak_kib": peak, "seconds": took,
                  "sessions": judgement.summary["sessions"], "verdict": judgement.summary["verdict"]}))
"""


def write_run(run_dir: Path, sessions: int, clients: int, duration: float, events: bool, seed: int) -> list[str]:
    """A run directory of ``sessions`` records; returns the pods at the end."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True)
    per_client = max(1, sessions // clients)
    step = duration / per_client
    scale_at, kill_at = duration * 0.4, duration * 0.7
    with open(run_dir / "sessions-0-1.jsonl", "w", encoding="utf-8") as fh:
        for k in range(per_client):
            for c in range(clients):
                started = T0 + k * step + rng.random() * step * 0.5
                pod = PODS[c % 3]
                if events and started - T0 > scale_at and c % 4 == 3:
                    pod = ("app-3", "app-4")[c % 2]
                if events and started - T0 > kill_at and pod == "app-1":
                    pod = "app-5"
                record = SessionRecord(
                    client=f"c{c}",
                    source=f"127.64.{c // 250}.{c % 250 + 1}",
                    mode=Mode.UPGRADE,
                    started=started,
                    ended=started + step * 0.5,
                    sid=f"{rng.getrandbits(80):020x}",
                    pods=[pod],
                    counts={"handshake": 1, "poll": 2, "post": 2, "upgrade": 1, "ack": 3},
                    connected=True,
                    upgraded=True,
                )
                if rng.random() < 0.001:
                    record.error = "connection reset by peer"
                write_session(fh, record)
    if not events:
        return PODS
    timeline = [
        EventRecord(
            id="e1", label="scale app 5", action="scale", target="app", replicas=5,
            started=T0 + scale_at, ended=T0 + scale_at + 2, pods_before=PODS,
            pods_after=[*PODS, "app-3", "app-4"], removed=[], added=["app-3", "app-4"],
        ),
        EventRecord(
            id="e2", label="kill app", action="kill", target="app", replicas=None,
            started=T0 + kill_at, ended=T0 + kill_at + 2, pods_before=[*PODS, "app-3", "app-4"],
            pods_after=["app-0", "app-2", "app-3", "app-4", "app-5"], removed=["app-1"], added=["app-5"],
        ),
    ]  # fmt: skip
    text = "".join(json.dumps(e.to_json()) + "\n" for e in timeline)
    (run_dir / "events.jsonl").write_text(text, encoding="utf-8")
    return timeline[-1].pods_after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,200000", help="session counts, comma-separated")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds the sessions are spread over")
    parser.add_argument("--events", action="store_true", help="a scale-up and a pod kill in the timeline")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose harness judges")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < args.clients:
        parser.error(f"--sizes must each be at least --clients ({args.clients})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="judge-memory-") as tmp:
        for n in sizes:
            run_dir = Path(tmp) / f"run-{n}"
            t = time.perf_counter()
            pods = write_run(run_dir, n, args.clients, args.duration, args.events, seed=n)
            wrote = time.perf_counter() - t
            size_mib = (run_dir / "sessions-0-1.jsonl").stat().st_size / 2**20
            print(f"{n:>8,} sessions: wrote {size_mib:.1f} MiB of records in {wrote:.1f} s; judging…", flush=True)
            out = subprocess.run(
                [sys.executable, "-c", _JUDGE, str(args.source.resolve()), str(run_dir), json.dumps(pods)],
                check=True,
                capture_output=True,
                text=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["records_mib"] = round(size_mib, 1)
            rows.append(row)
            print(
                f"{'':>8}  peak RSS {row['peak_kib'] / 1024:.1f} MiB (at import {row['before_kib'] / 1024:.1f}), "
                f"judged in {row['seconds']:.1f} s, {row['sessions']:,} sessions, {row['verdict']}",
                flush=True,
            )
    if len(rows) > 1:
        low, high = rows[0], rows[-1]
        growth = (high["peak_kib"] - low["peak_kib"]) * 1024 / (high["sessions"] - low["sessions"])
        print(f"growth: {growth:,.0f} bytes of peak RSS per session ({low['sessions']:,} → {high['sessions']:,})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
