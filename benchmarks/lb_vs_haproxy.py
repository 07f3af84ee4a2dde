"""Our load-balancer simulator against HAProxy, side by side in one process tree, on this machine.

The same backend (nginx, ``listen ... proxy_protocol``, a small fixed body), the same load generator (wrk), once
through HAProxy (``mode tcp``, ``send-proxy``) and once through our simulator (PROXY v1), with nginx reached
directly as the baseline for "added latency". Rounds are interleaved and their order rotated, so that whatever
else the machine is doing falls on every contestant alike; the table shows each round and the medians.

Targets, as ratios to HAProxy in the same run: new connections per second ≥ 50 %, keep-alive requests per
second ≥ 80 %, p99 added latency ≤ 2x. After the rounds, ``--churn`` connections go through our simulator
and its file-descriptor count must come back to where it was (and it must still be running).

    .venv/bin/python benchmarks/lb_vs_haproxy.py [--rounds 3] [--duration 5] [--workers N] [--churn 100000]

Needs nginx, haproxy and wrk (``apt-get install nginx haproxy wrk``). Everything it starts runs in its own
process group and is stopped at the end, on error and on Ctrl-C. Exit code 0 when every target is met, 1 when
one is not, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NGINX_IP, HAPROXY_IP, OURS_IP = "127.77.0.1", "127.77.0.2", "127.77.0.3"
BODY = "ok\n"
TARGETS = {"conn_per_s": 0.5, "keepalive_per_s": 0.8, "p99_added": 2.0}


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Result:
    conn_per_s: list[float] = field(default_factory=list)
    keepalive_per_s: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us_per_conn: list[float] = field(default_factory=list)  # the proxy's own CPU time per new connection
    cpu_us_per_request: list[float] = field(default_factory=list)  # ... per keep-alive request
    errors: int = 0


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(host: str, port: int, started: Started, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise SystemExit(f"{started.name} exited at start:\n{started.log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{started.name} does not listen on {host}:{port}")


def spawn(name: str, argv: list[str], workdir: Path) -> Started:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir)
    return Started(name, proc, log)


def stop(started: Started) -> None:
    if started.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.proc.pid, signal.SIGTERM)
        try:
            started.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.proc.pid, signal.SIGKILL)
            started.proc.wait(5)


def nginx_config(workdir: Path, direct_port: int, pp_port: int) -> str:
    temp = "".join(f"    {k}_temp_path {workdir}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log error;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 10000000;
{temp}    server {{ listen {NGINX_IP}:{direct_port}; location / {{ return 200 "{BODY.strip()}\\n"; }} }}
    server {{ listen {NGINX_IP}:{pp_port} proxy_protocol; location / {{ return 200 "{BODY.strip()}\\n"; }} }}
}}
"""


def haproxy_config(port: int, backend_port: int, threads: int | None) -> str:
    nbthread = f"    nbthread {threads}\n" if threads else ""
    return f"""global
    maxconn 8000
{nbthread}defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend entry
    bind {HAPROXY_IP}:{port}
    default_backend nginx
backend nginx
    server nginx {NGINX_IP}:{backend_port} send-proxy
"""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, duration: int, connections: int, *, close: bool = False, latency: bool = False) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    if close:
        argv += ["-H", "Connection: close"]
    if latency:
        argv.append("--latency")
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None:
        raise SystemExit(f"wrk gave no rate for {url}:\n{out}")
    return {
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else None,
        "errors": errors + (int(bad.group(1)) if bad else 0),
    }


def fds_of_tree(pid: int) -> int:
    """Open file descriptors of a process and its children (our simulator's workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0
    for each in pids:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{each}/fd"))
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    ticks = 0
    for each in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def contestants(args: argparse.Namespace, workdir: Path) -> Iterator[dict[str, tuple[str, Started | None]]]:
    started: list[Started] = []
    try:
        direct_port, pp_port = free_port(NGINX_IP), free_port(NGINX_IP)
        (workdir / "nginx.conf").write_text(nginx_config(workdir, direct_port, pp_port))
        nginx = spawn("nginx", ["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf")], workdir)
        started.append(nginx)
        wait_port(NGINX_IP, direct_port, nginx)
        wait_port(NGINX_IP, pp_port, nginx)
        hp_port = free_port(HAPROXY_IP)
        (workdir / "haproxy.cfg").write_text(haproxy_config(hp_port, pp_port, args.haproxy_threads))
        haproxy = spawn("haproxy", ["haproxy", "-db", "-f", str(workdir / "haproxy.cfg")], workdir)
        started.append(haproxy)
        wait_port(HAPROXY_IP, hp_port, haproxy)
        our_port = free_port(OURS_IP)
        argv = [sys.executable, "-m", "harness.net.lb", "--listen", f"{OURS_IP}:{our_port}"]
        argv += ["--target", f"nginx={NGINX_IP}:{pp_port}", "--proxy-protocol", "v1", "--workers", str(args.workers)]
        if args.no_uvloop:
            argv.append("--no-uvloop")
        ours = spawn("ours", argv, workdir)
        started.append(ours)
        wait_port(OURS_IP, our_port, ours)
        yield {
            "direct": (f"http://{NGINX_IP}:{direct_port}/", None),
            "haproxy": (f"http://{HAPROXY_IP}:{hp_port}/", haproxy),
            "ours": (f"http://{OURS_IP}:{our_port}/", ours),
        }
    finally:
        for each in reversed(started):
            stop(each)


def measure(args: argparse.Namespace, urls: dict[str, tuple[str, Started | None]]) -> dict[str, Result]:
    results = {name: Result() for name in urls}
    names = list(urls)
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        print(f"round {round_ + 1}/{args.rounds}: load average {loadavg()}, order {', '.join(order)}", flush=True)
        for name in order:
            url, started = urls[name]
            pid = started.proc.pid if started else None
            cpu0 = cpu_seconds(pid) if pid else 0.0
            conn = wrk(url, args.duration, args.connections, close=True)
            cpu1 = cpu_seconds(pid) if pid else 0.0
            keep = wrk(url, args.duration, args.connections)
            cpu2 = cpu_seconds(pid) if pid else 0.0
            lat = wrk(url, args.duration, 1, latency=True)
            result = results[name]
            if pid:
                result.cpu_us_per_conn.append((cpu1 - cpu0) * 1e6 / max(conn["requests"], 1))
                result.cpu_us_per_request.append((cpu2 - cpu1) * 1e6 / max(keep["requests"], 1))
            result.conn_per_s.append(conn["rate"])
            result.keepalive_per_s.append(keep["rate"])
            result.p99_ms.append(lat["p99_ms"] or float("nan"))
            result.errors += conn["errors"] + keep["errors"] + lat["errors"]
            print(
                f"  {name:<8} new conn/s {conn['rate']:>9.0f}   keep-alive req/s {keep['rate']:>9.0f}"
                f"   p99 (1 conn) {lat['p99_ms']:.3f} ms   errors {conn['errors'] + keep['errors']}",
                flush=True,
            )
    return results


def churn(args: argparse.Namespace, url: str, ours: Started, rate: float) -> dict[str, Any]:
    """``args.churn`` connections through our simulator; its fd count must come back to the baseline."""
    before = fds_of_tree(ours.proc.pid)
    duration = int(min(max(args.churn / max(rate, 1.0) * 1.1 + 1, 2), 120))
    done = wrk(url, duration, args.connections, close=True)
    deadline = time.monotonic() + 15
    after = fds_of_tree(ours.proc.pid)
    while after > before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = fds_of_tree(ours.proc.pid)
    return {
        "connections": done["requests"],
        "seconds": duration,
        "fds_before": before,
        "fds_after": after,
        "alive": alive(ours.proc.pid) and ours.proc.poll() is None,
        "errors": done["errors"],
    }


def report(results: dict[str, Result]) -> tuple[dict[str, float], bool]:
    med = {
        name: {k: statistics.median(getattr(r, k)) for k in ("conn_per_s", "keepalive_per_s", "p99_ms")}
        for name, r in results.items()
    }
    # added latency per round (each contestant against the direct run of the same round), then the median
    direct = results["direct"].p99_ms
    added = {
        name: max(statistics.median(max(p - d, 0.0) for p, d in zip(results[name].p99_ms, direct, strict=True)), 0.005)
        for name in ("haproxy", "ours")
    }
    print("\nmedians             new conn/s   keep-alive req/s   p99 ms   p99 added ms")
    for name in ("direct", "haproxy", "ours"):
        m = med[name]
        extra = f"{added[name]:>12.3f}" if name in added else f"{'(baseline)':>12}"
        print(f"  {name:<16} {m['conn_per_s']:>11.0f} {m['keepalive_per_s']:>18.0f} {m['p99_ms']:>8.3f} {extra}")
    cpu = {
        name: (statistics.median(results[name].cpu_us_per_conn), statistics.median(results[name].cpu_us_per_request))
        for name in ("haproxy", "ours")
    }
    print("\nCPU of the proxy itself (all its threads or processes), median µs")
    for name, (per_conn, per_request) in cpu.items():
        print(f"  {name:<16} {per_conn:>8.1f} per new connection {per_request:>8.1f} per keep-alive request")
    ratios = {
        "conn_per_s": med["ours"]["conn_per_s"] / med["haproxy"]["conn_per_s"],
        "keepalive_per_s": med["ours"]["keepalive_per_s"] / med["haproxy"]["keepalive_per_s"],
        "p99_added": added["ours"] / added["haproxy"],
    }
    ok = True
    print("\nratios ours / haproxy")
    for key, value in ratios.items():
        target = TARGETS[key]
        met = value <= target if key == "p99_added" else value >= target
        ok &= met
        want = f"≤ {target:g}x" if key == "p99_added" else f"≥ {target:.0%}"
        shown = f"{value:.2f}x" if key == "p99_added" else f"{value:.0%}"
        print(f"  {key:<16} {shown:>8}   target {want:<7} {'met' if met else 'NOT MET'}")
    return ratios, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections for the rate runs")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="our simulator's processes")
    parser.add_argument("--haproxy-threads", type=int, default=None, help="nbthread (default: HAProxy's own)")
    parser.add_argument("--churn", type=int, default=100_000, help="connections for the fd check (0: skip)")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    missing = [b for b in ("nginx", "haproxy", "wrk") if shutil.which(b) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install {' '.join(missing)})", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    print(
        f"cpus {os.cpu_count()}, load average {loadavg()}, our workers {args.workers}, "
        f"haproxy nbthread {args.haproxy_threads or 'default'}, wrk -t1 -c{args.connections} -d{args.duration}s"
    )
    with tempfile.TemporaryDirectory(prefix="lb-bench-") as tmp, contestants(args, Path(tmp)) as urls:
        results = measure(args, urls)
        ratios, ok = report(results)
        churned = None
        if args.churn:
            ours = urls["ours"][1]
            assert ours is not None
            churned = churn(args, urls["ours"][0], ours, statistics.median(results["ours"].conn_per_s))
            fds_ok = churned["alive"] and churned["fds_after"] <= churned["fds_before"]
            ok &= fds_ok
            print(
                f"\nchurn: {churned['connections']} connections in {churned['seconds']} s through ours; "
                f"fds {churned['fds_before']} → {churned['fds_after']}; "
                f"{'still running' if churned['alive'] else 'DIED'}; {'ok' if fds_ok else 'NOT OK'}"
            )
        print(f"load average at the end {loadavg()}")
        if args.json:
            data = {name: r.__dict__ for name, r in results.items()}
            args.json.write_text(json.dumps({"results": data, "ratios": ratios, "churn": churned}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
