"""Our load-balancer simulator against HAProxy, side by side in one process tree, on this machine.

The same backend (nginx, ``listen ... proxy_protocol``, a small fixed body) once through HAProxy (``mode tcp``,
``send-proxy``) and once through our simulator (PROXY v1), with nginx reached directly as the baseline.

- Throughput: wrk, new connections per second and keep-alive requests per second. Rounds are interleaved and
  their order rotated, so that whatever else the machine is doing falls on every contestant alike; the table
  shows each round and the medians.
- Added latency: one request at a time, timed from this process, the three contestants interleaved request by
  request in a shuffled order, once on kept-alive connections and once with a new connection per request. The
  latency a proxy adds to a request is its time minus that of the direct request of the same step; its p99 is
  compared, with a bootstrap interval over the steps.

Targets, as ratios to HAProxy in the same run: new connections per second ≥ 50 %, keep-alive requests per
second ≥ 80 %, p99 added latency ≤ 2x (kept-alive and new connections alike). After the rounds, ``--churn``
connections go through our simulator and its file-descriptor count must come back to where it was (and it must
still be running).

    .venv/bin/python benchmarks/lb_vs_haproxy.py [--rounds 3] [--duration 5] [--workers N] [--churn 100000]
        [--latency-samples 30000]

Needs nginx, haproxy and wrk (``apt-get install nginx haproxy wrk``). Everything it starts runs in its own
process group and is stopped at the end, on error and on Ctrl-C. Exit code 0 when every target is met, 1 when
one is not, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import random
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
TARGETS = {"conn_per_s": 0.5, "keepalive_per_s": 0.8, "p99_added_keepalive": 2.0, "p99_added_new_connection": 2.0}


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Result:
    conn_per_s: list[float] = field(default_factory=list)
    keepalive_per_s: list[float] = field(default_factory=list)
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


def wrk(url: str, duration: int, connections: int, *, close: bool = False) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    if close:
        argv += ["-H", "Connection: close"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None:
        raise SystemExit(f"wrk gave no rate for {url}:\n{out}")
    return {
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)) if total else 0,
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
            result = results[name]
            if pid:
                result.cpu_us_per_conn.append((cpu1 - cpu0) * 1e6 / max(conn["requests"], 1))
                result.cpu_us_per_request.append((cpu2 - cpu1) * 1e6 / max(keep["requests"], 1))
            result.conn_per_s.append(conn["rate"])
            result.keepalive_per_s.append(keep["rate"])
            result.errors += conn["errors"] + keep["errors"]
            print(
                f"  {name:<8} new conn/s {conn['rate']:>9.0f}   keep-alive req/s {keep['rate']:>9.0f}"
                f"   errors {conn['errors'] + keep['errors']}",
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


# --- added latency: one request at a time, the contestants interleaved request by request -------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
RESPONSE_END = b"\r\n\r\n" + BODY.encode()


class Prober:
    """Blocking requests to one contestant, each timed from the first byte sent (or the connect) to the last
    byte of the answer received."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
        self.address = (host, int(port))
        self.sock: socket.socket | None = None

    def _read_answer(self, sock: socket.socket) -> None:
        got = b""
        while not got.endswith(RESPONSE_END):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"{self.address} closed before its answer was complete: {got!r}")
            got += chunk

    def keepalive(self) -> int:
        """Nanoseconds for one request on a connection kept open between requests."""
        if self.sock is None:
            self.sock = socket.create_connection(self.address)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        start = time.perf_counter_ns()
        sock.sendall(REQUEST)
        self._read_answer(sock)
        return time.perf_counter_ns() - start

    def new_connection(self) -> int:
        """Nanoseconds for connect, one request and its answer on a new connection (closed afterwards)."""
        start = time.perf_counter_ns()
        with socket.create_connection(self.address) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(REQUEST_CLOSE)
            self._read_answer(sock)
            took = time.perf_counter_ns() - start
        return took

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def probe(urls: dict[str, str], samples: int, kind: str, rng: random.Random) -> dict[str, list[int]]:
    """``samples`` timed requests per contestant, interleaved: each step times one request of every contestant,
    in an order shuffled per step, so that whatever else the machine does falls on all of them alike."""
    probers = {name: Prober(url) for name, url in urls.items()}
    names = list(probers)
    times: dict[str, list[int]] = {name: [] for name in names}
    warmup = max(samples // 20, 50)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for step in range(warmup + samples):
            rng.shuffle(names)
            for name in names:
                took = getattr(probers[name], kind)()
                if step >= warmup:
                    times[name].append(took)
    finally:
        if gc_was:
            gc.enable()
        for prober in probers.values():
            prober.close()
    return times


def quantile(ordered: list[int], q: float) -> int:
    """Nearest-rank quantile of sorted values."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class Added:
    """The latency each proxy adds to a request: its time minus that of the direct request of the same step.

    Paired by step, so that a stall of the machine that slows a whole step (every contestant's request in it)
    cancels out; the difference of two separately taken p99s does not, and swings with how many stalls fell
    into each run."""

    kind: str
    samples: int
    latency_us: dict[str, dict[float, float]]  # contestant → quantile → µs (the requests themselves)
    added_us: dict[str, dict[float, float]]  # proxy → quantile → µs added
    ratio: float  # p99 added, ours over HAProxy's
    ratio_low: float  # 95 % bootstrap interval of the ratio (steps resampled)
    ratio_high: float


def added_latency(kind: str, times: dict[str, list[int]], rng: random.Random, boots: int) -> Added:
    direct = times["direct"]
    added = {name: [x - d for x, d in zip(times[name], direct, strict=True)] for name in ("haproxy", "ours")}

    def quantiles_us(values: list[int], qs: tuple[float, ...] = QUANTILES) -> dict[float, float]:
        ordered = sorted(values)
        return {q: quantile(ordered, q) / 1000 for q in qs}

    def p99_ratio(added_us: dict[str, dict[float, float]]) -> float:
        return added_us["ours"][0.99] / max(added_us["haproxy"][0.99], 1.0)  # HAProxy adding under 1 µs: 1 µs

    steps = range(len(direct))
    resampled = []
    for _ in range(boots):
        picked = rng.choices(steps, k=len(direct))
        resampled.append(
            p99_ratio({name: quantiles_us([xs[i] for i in picked], (0.99,)) for name, xs in added.items()})
        )
    resampled.sort()
    added_us = {name: quantiles_us(xs) for name, xs in added.items()}
    return Added(
        kind=kind,
        samples=len(direct),
        latency_us={name: quantiles_us(xs) for name, xs in times.items()},
        added_us=added_us,
        ratio=p99_ratio(added_us),
        ratio_low=resampled[int(0.025 * boots)],
        ratio_high=resampled[min(int(0.975 * boots), boots - 1)],
    )


def measure_latency(args: argparse.Namespace, urls: dict[str, str]) -> list[Added]:
    rng = random.Random(args.seed)
    found = []
    for kind, samples in (("keepalive", args.latency_samples), ("new_connection", args.latency_samples // 3)):
        started = time.monotonic()
        print(f"latency, {kind.replace('_', ' ')}: {samples} requests per contestant, interleaved", flush=True)
        found.append(added_latency(kind, probe(urls, samples, kind, rng), rng, args.bootstrap))
        print(f"  took {time.monotonic() - started:.0f} s", flush=True)
    return found


def report(results: dict[str, Result], latencies: list[Added]) -> tuple[dict[str, float], bool]:
    med = {
        name: {k: statistics.median(getattr(r, k)) for k in ("conn_per_s", "keepalive_per_s")}
        for name, r in results.items()
    }
    print("\nmedians             new conn/s   keep-alive req/s")
    for name in ("direct", "haproxy", "ours"):
        m = med[name]
        print(f"  {name:<16} {m['conn_per_s']:>11.0f} {m['keepalive_per_s']:>18.0f}")
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
    }
    for found in latencies:
        print(f"\nlatency, {found.kind.replace('_', ' ')} ({found.samples} requests each), µs   p50     p90     p99")
        for name, at in found.latency_us.items():
            print(f"  {name:<32} {at[0.5]:>7.0f} {at[0.9]:>7.0f} {at[0.99]:>7.0f}")
        for name, at in found.added_us.items():
            print(f"  {'added by ' + name:<32} {at[0.5]:>7.0f} {at[0.9]:>7.0f} {at[0.99]:>7.0f}")
        print(
            f"  p99 added, ours / haproxy: {found.ratio:.2f}x"
            f" (95 % interval {found.ratio_low:.2f} to {found.ratio_high:.2f})"
        )
        ratios[f"p99_added_{found.kind}"] = found.ratio
    ok = True
    print("\nratios ours / haproxy")
    for key, value in ratios.items():
        target = TARGETS[key]
        lower_is_better = key.startswith("p99")
        met = value <= target if lower_is_better else value >= target
        ok &= met
        want = f"≤ {target:g}x" if lower_is_better else f"≥ {target:.0%}"
        shown = f"{value:.2f}x" if lower_is_better else f"{value:.0%}"
        print(f"  {key:<26} {shown:>8}   target {want:<7} {'met' if met else 'NOT MET'}")
    return ratios, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections for the rate runs")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="our simulator's processes")
    parser.add_argument("--haproxy-threads", type=int, default=None, help="nbthread (default: HAProxy's own)")
    parser.add_argument("--churn", type=int, default=100_000, help="connections for the fd check (0: skip)")
    parser.add_argument(
        "--latency-samples",
        type=int,
        default=30_000,
        help="timed keep-alive requests per contestant (a third as many new connections)",
    )
    parser.add_argument("--bootstrap", type=int, default=300, help="resamples for the latency ratio's interval")
    parser.add_argument("--seed", type=int, default=1, help="for the request order and the resamples")
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
        latencies = measure_latency(args, {name: url for name, (url, _) in urls.items()})
        ratios, ok = report(results, latencies)
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
            latency = [found.__dict__ for found in latencies]
            out = {"results": data, "latency": latency, "ratios": ratios, "churn": churned}
            args.json.write_text(json.dumps(out, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
