"""How much load the harness's load side can make on this machine, and what gives out first.

Two measurements, both on the local backend (the cluster under test on the same machine):

``held``: long sessions held at once. For each step of ``--steps`` it runs

    harness run --topology T --clients K --users N --spawn-rate R --session-length L --duration D --processes P

with D long enough for every client to run at least three sessions after the ramp (so affinity is judged), and
samples every process of the run's tree once a second (CPU % of one core, resident memory, open descriptors):
each load process, the network daemon (load balancer and node ports), the proxy tier, the app pods. A step is
*held* when the run's verdict is as expected, no load process was saturated and fewer than 1 % of the sessions
broke; the first step that is not says what saturated first: a load process (the summary's ``load`` section), a
process of the cluster at more than 90 % of a core for over 10 % of the run, descriptors near a limit, or broken
sessions (their errors, counted).

    .venv/bin/python benchmarks/swarm_capacity.py held --clients websocket --steps 1000,2000,5000,10000
    .venv/bin/python benchmarks/swarm_capacity.py held --clients polling --steps 1000,2000,3000 --processes 2

``exchanges``: active exchanges (handshakes, polls, POSTs, upgrades, acks) per CPU-second of a load process, the
harness's instrumented clients against plain python-socketio clients run by the same Locust (gevent) in
``benchmarks/plain_socketio.py``, on one cluster from ``harness up``, rounds interleaved. The plain clients
count their exchanges with a response hook and their acks; their CPU is the process's own between test start
and stop. The instrumented clients' exchanges are their records' counts; their CPU, the load samples' sum.

    .venv/bin/python benchmarks/swarm_capacity.py exchanges --users 200 --duration 30 --rounds 3

``--json FILE`` writes every step's figures. Exit code 0 when it ran (the figures are the result), 2 when it
could not (nginx missing, the cluster did not come up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness.cli"]
BUSY_CPU = 90.0
BUSY_SHARE = 0.10


def role_of(proc: psutil.Process) -> str:
    """What a process of a run's tree is, from the program or ``-m`` module it runs (not from its arguments,
    which name topologies such as nginx-hash)."""
    try:
        argv = proc.cmdline()
        name = proc.name()
    except psutil.Error:
        return "gone"
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    if module == "locust":
        return "load"
    if module.startswith("harness.net"):
        return "netd"
    if module == "harness.app":
        return "app"
    if module == "harness.cli":
        return "owner"
    for program in ("nginx", "haproxy"):
        if name.startswith(program) or (argv and argv[0].startswith(program)):
            return program
    return name


class TreeSampler:
    """Samples CPU, RSS and descriptors of a process and its descendants, once a second, in a thread."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.procs: dict[int, psutil.Process] = {}
        self.series: dict[int, list[tuple[float, float, int, int]]] = {}
        self.labels: dict[int, str] = {}
        self.fd_limits: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> TreeSampler:
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                continue
            now = time.time()
            for proc in tree:
                if proc.pid not in self.procs:
                    self.procs[proc.pid] = proc
                    with contextlib.suppress(psutil.Error):
                        proc.cpu_percent(None)  # the first reading starts the interval
                    continue
                try:
                    cpu = self.procs[proc.pid].cpu_percent(None)
                    rss = proc.memory_info().rss
                    fds = proc.num_fds()
                    if proc.pid not in self.fd_limits:
                        self.fd_limits[proc.pid] = _fd_limit(proc)
                except psutil.Error:
                    continue
                if proc.pid not in self.labels:
                    self.labels[proc.pid] = role_of(proc)
                self.series.setdefault(proc.pid, []).append((now, cpu, rss, fds))

    def finish(self, keep_series: bool = False) -> list[dict[str, Any]]:
        self.stop.set()
        self.thread.join(5)
        out = []
        for pid, series in self.series.items():
            if not series:
                continue
            cpus = [s[1] for s in series]
            out.append(
                {
                    "pid": pid,
                    "role": self.labels.get(pid, "?"),
                    "samples": len(series),
                    "mean_cpu": round(sum(cpus) / len(cpus), 1),
                    "peak_cpu": round(max(cpus), 1),
                    "busy_share": round(sum(1 for c in cpus if c > BUSY_CPU) / len(cpus), 3),
                    "peak_rss_mib": round(max(s[2] for s in series) / 2**20, 1),
                    "peak_fds": max(s[3] for s in series),
                    "fd_limit": self.fd_limits.get(pid, 0),
                    **({"series": series} if keep_series else {}),
                }
            )
        return sorted(out, key=lambda p: (p["role"], p["pid"]))


def _fd_limit(proc: psutil.Process) -> int:
    """The soft open-files limit of a process (0: not readable, e.g. an nginx worker run as nobody)."""
    try:
        for line in Path(f"/proc/{proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_harness(argv: list[str], log: Path, keep_series: bool = False) -> tuple[int, list[dict[str, Any]], float]:
    """Run ``harness …`` in its own process group, sampling its tree; Ctrl-C stops it and its children."""
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([*HARNESS, *argv], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    sampler = TreeSampler(proc.pid).start()
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        raise
    finally:
        tree = sampler.finish(keep_series)
    return code, tree, time.monotonic() - started


def _run_dir(log: Path) -> Path | None:
    for line in log.read_text(errors="replace").splitlines():
        if "report:" in line or "run dir" in line:
            for word in line.split():
                path = Path(word.strip(" ,"))
                if path.is_dir() or (path.suffix == ".html" and path.exists()):
                    return path if path.is_dir() else path.parent
    return None


def broken_kinds(run_dir: Path) -> dict[str, int]:
    """Errors of the run's sessions, by their first words."""
    kinds: dict[str, int] = {}
    for path in run_dir.glob("sessions-*.jsonl"):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    error = json.loads(line).get("error")
                except ValueError:
                    continue
                if error:
                    key = " ".join(str(error).split()[:4])
                    kinds[key] = kinds.get(key, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:6])


def held_step(args: argparse.Namespace, users: int, reports: Path) -> dict[str, Any]:
    rate = min(args.spawn_rate, 1000.0)
    ramp = users / rate
    length = args.session_length
    duration = int(ramp + 3.5 * length + 5)
    argv = [
        "run",
        "--topology",
        args.topology,
        "--clients",
        args.clients,
        "--users",
        str(users),
        "--spawn-rate",
        f"{rate:g}",
        "--session-length",
        f"{length:g}s",
        "--calls",
        "1",
        "--duration",
        f"{duration}s",
        "--processes",
        str(args.processes),
        "--reports-dir",
        str(reports),
    ]
    print(
        f"\n== {users} {args.clients} clients, {args.processes} load process(es): harness {' '.join(argv)}", flush=True
    )
    log = reports / f"held-{args.clients}-{users}.log"
    code, tree, wall = run_harness(argv, log)
    summaries = sorted(
        (p for p in reports.glob("*/summary.json") if not p.parent.is_symlink()), key=lambda p: p.stat().st_mtime
    )
    summary = json.loads(summaries[-1].read_text()) if summaries else {}
    run_dir = summaries[-1].parent if summaries else None
    load = summary.get("load", {})
    sessions = int(summary.get("sessions", 0))
    broken = broken_kinds(run_dir) if run_dir else {}
    broken_total = sum(broken.values())
    cluster_hot = [p for p in tree if p["role"] not in ("load", "owner") and p["busy_share"] > BUSY_SHARE]
    near_fd = [p for p in tree if p["fd_limit"] and p["peak_fds"] > 0.9 * p["fd_limit"]]
    signs = []  # what saturated, first to last
    if load.get("saturated"):
        signs.append(str(load.get("reason")))
    signs += [
        f"{p['role']} pid {p['pid']} above {BUSY_CPU:g} % of a core {p['busy_share']:.0%} of the run"
        for p in cluster_hot
    ]
    signs += [f"{p['role']} pid {p['pid']} at {p['peak_fds']} of {p['fd_limit']} descriptors" for p in near_fd]
    failed = []
    if sessions and broken_total > 0.01 * sessions:
        failed.append(f"{broken_total} of {sessions} sessions broke: {broken}")
    if summary.get("verdict") != "as expected":
        failed.append(f"verdict {summary.get('verdict')!r} (exit {code})")
    load_procs = [p for p in load.get("per_process", []) if p.get("role") != "master"]
    row = {
        "clients": args.clients,
        "users": users,
        "processes": args.processes,
        "exit_code": code,
        "verdict": summary.get("verdict"),
        "sessions": sessions,
        "peak_live_sessions": load.get("peak_live_sessions"),
        "load_processes": load_procs,
        "load_rss_growth_mib_per_10k": _growth_per_10k(run_dir),
        "tree": tree,
        "broken": broken,
        "saturation": signs,
        "failed": failed,
        "held": not failed,
        "wall_s": round(wall, 1),
        "run_dir": str(run_dir) if run_dir else None,
    }
    print(_held_line(row), flush=True)
    return row


def _growth_per_10k(run_dir: Path | None) -> float | None:
    """Per load process, resident memory gained from its first sample to its peak over the live sessions gained
    in between; summed over the processes, per 10,000 sessions."""
    if run_dir is None:
        return None
    growth, sessions = 0, 0
    for path in run_dir.glob("load-*.json"):
        data = json.loads(path.read_text())
        samples = data.get("samples") or []
        if data.get("role") != "master" and samples:
            growth += max(s[3] for s in samples) - samples[0][3]
            sessions += max(s[4] for s in samples) - samples[0][4]
    return round(growth / 2**20 * 10000 / sessions, 1) if sessions > 0 else None


def _held_line(row: dict[str, Any]) -> str:
    loads = ", ".join(
        f"{p['name']} CPU mean {p['mean_cpu']} % peak {p['peak_cpu']} %, RSS {p['peak_rss_mib']} MiB"
        for p in row["load_processes"]
    )
    by_role: dict[str, list[dict[str, Any]]] = {}
    for p in row["tree"]:
        by_role.setdefault(p["role"], []).append(p)
    cluster = "; ".join(
        f"{role} CPU mean {sum(p['mean_cpu'] for p in ps):.0f} % peak fds {max(p['peak_fds'] for p in ps)}"
        for role, ps in sorted(by_role.items())
        if role not in ("load", "owner")
    )
    state = ("HELD" if row["held"] else "NOT HELD: " + " | ".join(row["failed"])) + (
        "; saturation: " + " | ".join(row["saturation"]) if row["saturation"] else "; nothing saturated"
    )
    return (
        f"{row['users']} {row['clients']}: peak live {row['peak_live_sessions']}, sessions {row['sessions']}, "
        f"verdict {row['verdict']}; load: {loads}; "
        f"load memory {row['load_rss_growth_mib_per_10k']} MiB per 10,000 sessions; "
        f"cluster: {cluster}; {state}"
    )


def held_main(args: argparse.Namespace, reports: Path) -> list[dict[str, Any]]:
    rows = []
    for users in [int(s) for s in args.steps.split(",")]:
        row = held_step(args, users, reports)
        rows.append(row)
        if not row["held"] and not args.keep_going:
            break
    print("\n| clients | users | processes | peak live | verdict | load CPU mean / peak (%) | load RSS (MiB) | held |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = " · ".join(f"{p['mean_cpu']:.0f} / {p['peak_cpu']:.0f}" for p in r["load_processes"])
        rss = " · ".join(f"{p['peak_rss_mib']:.0f}" for p in r["load_processes"])
        held = "yes" if r["held"] else "no: " + "; ".join(r["failed"])[:200]
        held += " (saturation: " + "; ".join(r["saturation"])[:200] + ")" if r["saturation"] else ""
        print(
            f"| {r['clients']} | {r['users']} | {r['processes']} | {r['peak_live_sessions']} | {r['verdict']} "
            f"| {cpu} | {rss} | {held} |"
        )
    return rows


def memory_main(args: argparse.Namespace, reports: Path) -> list[dict[str, Any]]:
    """A long run: the owner's (``harness run``: it reads and judges every record) and the load processes'
    resident memory over it, and the owner's growth per session."""
    argv = ["run", "--topology", args.topology, "--users", str(args.users), "--spawn-rate", f"{args.spawn_rate:g}"]
    argv += ["--duration", f"{args.duration}s", "--processes", str(args.processes), "--reports-dir", str(reports)]
    print(f"\n== harness {' '.join(argv)}", flush=True)
    log = reports / "memory.log"
    code, tree, wall = run_harness(argv, log, keep_series=True)
    (summary_path,) = [p for p in reports.glob("*/summary.json") if not p.parent.is_symlink()]
    summary = json.loads(summary_path.read_text())
    owner = next(p for p in tree if p["role"] == "owner")
    series = owner.pop("series")
    start = series[min(len(series) - 1, 10)][2]  # ten seconds in: imports done, the cluster up
    sessions = int(summary["sessions"])
    row = {
        "users": args.users,
        "duration_s": args.duration,
        "processes": args.processes,
        "exit_code": code,
        "verdict": summary["verdict"],
        "sessions": sessions,
        "owner_rss_mib_at_10s": round(start / 2**20, 1),
        "owner_peak_rss_mib": owner["peak_rss_mib"],
        "owner_growth_bytes_per_session": round((owner["peak_rss_mib"] * 2**20 - start) / max(1, sessions)),
        "load_processes": [{k: p[k] for k in ("pid", "peak_rss_mib", "mean_cpu")} for p in tree if p["role"] == "load"],
        "wall_s": round(wall, 1),
    }
    for p in tree:
        p.pop("series", None)
    print(json.dumps(row, indent=1), flush=True)
    return [row]


def _count_instrumented(run_dir: Path) -> tuple[int, float, float]:
    """Exchanges in a run's records, the load processes' CPU-seconds (sum of their per-second samples) and the
    swarm's seconds."""
    exchanges = 0
    for path in run_dir.glob("sessions-*.jsonl"):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                counts = json.loads(line).get("counts", {})
                exchanges += sum(v for k, v in counts.items() if k != "reconnect")
    cpu = 0.0
    seconds = 0.0
    for path in run_dir.glob("load-*.json"):
        data = json.loads(path.read_text())
        if data.get("role") == "master":
            continue
        samples = data.get("samples", [])
        cpu += sum(s[1] for s in samples) / 100.0
        seconds = max(seconds, len(samples))
    return exchanges, cpu, seconds


def exchanges_main(args: argparse.Namespace, reports: Path) -> list[dict[str, Any]]:
    name = f"capbench-{os.getpid()}"
    up = subprocess.run(
        [*HARNESS, "up", "--topology", args.topology, "--name", name, "--reports-dir", str(reports)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if up.returncode != 0:
        print(up.stdout + up.stderr, file=sys.stderr)
        raise SystemExit(2)
    entry = _entry_of(up.stdout)
    rows: list[dict[str, Any]] = []
    try:
        for n in range(args.rounds):
            for kind in ("instrumented", "plain") if n % 2 == 0 else ("plain", "instrumented"):
                rows.append(_exchange_round(args, kind, name, entry, reports, n))
                print(_exchange_line(rows[-1]), flush=True)
    finally:
        subprocess.run([*HARNESS, "down", "--name", name, "--reports-dir", str(reports)], cwd=ROOT, capture_output=True)
    for kind in ("instrumented", "plain"):
        per = [r["per_cpu_s"] for r in rows if r["kind"] == kind]
        per.sort()
        print(f"{kind}: median {per[len(per) // 2]:.0f} exchanges per CPU-second over {len(per)} rounds: {per}")
    inst = sorted(r["per_cpu_s"] for r in rows if r["kind"] == "instrumented")
    plain = sorted(r["per_cpu_s"] for r in rows if r["kind"] == "plain")
    ratio = plain[len(plain) // 2] / inst[len(inst) // 2]
    print(f"instrumented CPU per exchange = {ratio:.2f} x the plain client's (target <= 1.2)")
    return rows


def _entry_of(text: str) -> str:
    for word in text.split():
        if word.startswith("http://127."):
            return word.rstrip(",.;")
    raise SystemExit(f"no entry URL in `harness up` output:\n{text}")


def _exchange_round(
    args: argparse.Namespace, kind: str, name: str, entry: str, reports: Path, n: int
) -> dict[str, Any]:
    common = ["--headless", "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.duration}s"]
    common += ["--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10"]
    classes = {"websocket": "WebSocketClient", "polling": "PollingClient", "upgrade": "UpgradingClient"}
    if kind == "instrumented":
        argv = [sys.executable, "-m", "locust", "-f", str(ROOT / "scenarios" / "sticky.py"), "--attach", name]
        argv += [*common, "--calls", str(args.calls), "--harness-reports-dir", str(reports), classes[args.clients]]
        log = reports / f"round-{n}-instrumented.log"
        before = set(reports.glob("*/swarm-*/summary.json"))
        with open(log, "wb") as fh:
            subprocess.run(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=False)
        new = sorted(set(reports.glob("*/swarm-*/summary.json")) - before)
        if not new:
            raise SystemExit(f"instrumented round wrote no summary; see {log}")
        run_dir = new[-1].parent
        exchanges, cpu, seconds = _count_instrumented(run_dir)
    else:
        result = reports / f"round-{n}-plain.json"
        argv = [sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "plain_socketio.py"), "--host", entry]
        argv += [*common, "--calls", str(args.calls), "--mode", args.clients, "--result", str(result)]
        with open(reports / f"round-{n}-plain.log", "wb") as fh:
            subprocess.run(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=False)
        data = json.loads(result.read_text())
        exchanges, cpu, seconds = data["exchanges"], data["cpu_s"], data["seconds"]
    return {
        "kind": kind,
        "round": n,
        "exchanges": exchanges,
        "cpu_s": round(cpu, 2),
        "seconds": round(seconds, 1),
        "per_s": round(exchanges / max(seconds, 1e-9)),
        "per_cpu_s": round(exchanges / max(cpu, 1e-9)),
    }


def _exchange_line(r: dict[str, Any]) -> str:
    return (
        f"round {r['round']} {r['kind']:>12}: {r['exchanges']} exchanges in {r['seconds']} s, "
        f"{r['per_s']}/s, CPU {r['cpu_s']} s, {r['per_cpu_s']} per CPU-second"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    held = sub.add_parser("held", help="long sessions held at once, in steps, until something saturates")
    held.add_argument("--clients", choices=["websocket", "polling", "upgrade"], default="websocket")
    held.add_argument("--steps", default="1000,2000,5000,10000")
    held.add_argument("--processes", type=int, default=2)
    held.add_argument("--spawn-rate", type=float, default=200.0)
    held.add_argument("--session-length", type=float, default=40.0)
    held.add_argument("--topology", default="nginx-hash")
    held.add_argument("--keep-going", action="store_true", help="run every step, even after one was not held")
    ex = sub.add_parser("exchanges", help="exchanges per load CPU-second: instrumented against plain clients")
    ex.add_argument("--clients", choices=["websocket", "polling", "upgrade"], default="upgrade")
    ex.add_argument("--users", type=int, default=200)
    ex.add_argument("--spawn-rate", type=float, default=100.0)
    ex.add_argument("--duration", type=int, default=30)
    ex.add_argument("--calls", type=int, default=20)
    ex.add_argument("--rounds", type=int, default=3)
    ex.add_argument("--topology", default="nginx-hash")
    mem = sub.add_parser("memory", help="a long run: the owner's memory and its growth per session")
    mem.add_argument("--users", type=int, default=2000)
    mem.add_argument("--spawn-rate", type=float, default=100.0)
    mem.add_argument("--duration", type=int, default=600)
    mem.add_argument("--processes", type=int, default=2)
    mem.add_argument("--topology", default="nginx-hash")
    for p in (held, ex, mem):
        p.add_argument("--reports-dir", type=Path, default=None)
        p.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    reports = args.reports_dir or Path(tempfile.mkdtemp(prefix="swarm-capacity-"))
    reports.mkdir(parents=True, exist_ok=True)
    print(f"runs in {reports}; {os.cpu_count()} CPUs", flush=True)
    mains = {"held": held_main, "exchanges": exchanges_main, "memory": memory_main}
    rows = mains[args.what](args, reports)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
