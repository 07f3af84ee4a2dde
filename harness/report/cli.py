"""``harness report`` and ``harness compare``: the report commands, kept beside the report library.

The main CLI adds these with ``cli.add_command(report_command)`` and ``cli.add_command(compare_command)``. They
only read run directories, so they work on runs copied from CI. Exit codes follow the CLI's: 0 done / no
regression, 1 a regression, 2 a usage error (the message says what to do).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from harness.errors import HarnessError, UsageError
from harness.interrupts import signal_number

__all__ = ["compare_command", "rejudge", "report_command", "resolve_run"]

# what judge() takes from its caller rather than computes, kept when a run is judged again
_META_KEYS = (
    "seed",
    "users",
    "duration_s",
    "client_addresses",
    "session_length_s",
    "kube_proxy_mode",
    "case",
    "started",
    "ended",
    "report_dir",
)


def _reports_dir(value: str | None) -> Path:
    from harness.runs import default_reports_dir

    return Path(value).resolve() if value else default_reports_dir()


def resolve_run(value: str, reports_dir: Path) -> Path:
    """A run directory from a path, a ``summary.json`` path, a run id under ``reports_dir``, or ``latest``."""
    candidates = [Path(value), reports_dir / value]
    for path in candidates:
        if path.is_file() and path.name == "summary.json":
            return path.parent.resolve()
        if path.is_dir():
            return path.resolve()
    if value == "latest":
        raise UsageError(f"{reports_dir / 'latest'} does not exist: no run has been judged under {reports_dir} yet")
    raise UsageError(
        f"no run {value!r}: give a run directory, a summary.json, a run id under {reports_dir}, or `latest`"
    )


@contextlib.contextmanager
def _keep_latest(reports_dir: Path) -> Iterator[None]:
    """Judging points ``latest`` at the judged run; judging an old run again must not move it."""
    link = reports_dir / "latest"
    target = os.readlink(link) if link.is_symlink() else None
    try:
        yield
    finally:
        if target is not None and (not link.is_symlink() or os.readlink(link) != target):
            tmp = link.with_name(f".latest.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(target)
            tmp.replace(link)


def rejudge(run_dir: Path, *, topology: str | None = None, reports_dir: Path | None = None) -> dict[str, Any]:
    """Run the checks again on a run's records and write its ``summary.json``.

    What the records cannot tell (topology, pods at the end, removed pods, seed) comes from the old summary when
    there is one, else from the cluster state the local backend left (``cluster.json``), else from ``topology``
    and the pods the sessions reached.
    """
    from harness.client.records import read_run_sessions
    from harness.events import read_event_records
    from harness.runs import judge
    from harness.topology import load_topology

    old: dict[str, Any] = {}
    for name in ("summary.json", "cluster.json"):
        path = run_dir / name
        if path.is_file():
            with contextlib.suppress(ValueError):
                old = {**json.loads(path.read_text(encoding="utf-8")), **old}
    name = str(topology or old.get("topology") or "")
    if not name:
        raise UsageError(f"{run_dir} has no summary.json nor cluster.json: say which topology ran with --topology")
    removed = list(old.get("removed_pods", []))
    pods = list(old.get("pods") or [p["name"] for p in old.get("app_pods", [])])
    if not pods:
        events = read_event_records(run_dir)
        gone = set(removed) | {p for e in events for p in e.removed}
        seen = {p for s in read_run_sessions(run_dir) for p in s.pods}
        pods = sorted(seen - gone)
    meta = {key: old[key] for key in _META_KEYS if key in old}
    parent = reports_dir or run_dir.parent
    with _keep_latest(parent):
        judgement = judge(
            run_dir,
            load_topology(name),
            backend=str(old.get("backend", "local")),
            pods=pods,
            removed_pods=removed,
            meta=meta,
            reports_dir=parent,
            client_addresses=str(old.get("client_addresses", "unique")),
            harness_failure=old.get("harness_failure"),
            interrupted=signal_number(old.get("interrupted")),
            proxy_mismatch=next(
                (
                    str(f["reading"]).removeprefix("PROXY mismatch: ")
                    for f in old.get("findings") or []
                    if f.get("kind") == "proxy_mismatch"
                ),
                None,
            ),
        )
    return judgement.summary


class _SetupFailed(click.ClickException):
    exit_code = 2


def _fail(exc: HarnessError) -> click.ClickException:
    if isinstance(exc, UsageError):
        return click.UsageError(str(exc))
    return _SetupFailed(str(exc))


@click.command("report")
@click.argument("run")
@click.option("--reports-dir", default=None, help="Where runs live (default: ./reports).")
@click.option("--topology", default=None, help="Topology to judge with when the run has no summary.json.")
@click.option("--rejudge", "again", is_flag=True, help="Run the checks again even when summary.json exists.")
def report_command(run: str, reports_dir: str | None, topology: str | None, again: bool) -> None:
    """Rebuild report.html and junit.xml of RUN (a run directory, a run id, or `latest`) from its records."""
    from harness.report import write_report

    try:
        run_dir = resolve_run(run, _reports_dir(reports_dir))
        if again or not (run_dir / "summary.json").is_file():
            summary = rejudge(run_dir, topology=topology)
            click.echo(f"judged {run_dir.name}: {summary['verdict']}")
        files = write_report(run_dir)
    except HarnessError as exc:
        raise _fail(exc) from exc
    click.echo(f"report: {files.html}")
    click.echo(f"junit:  {files.junit}")


@click.command("compare")
@click.argument("baseline")
@click.argument("run")
@click.option(
    "--latency-threshold",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Relative rise of p99 handshake latency that is a regression (0.2 = 20 %).",
)
@click.option(
    "--latency-floor-ms",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="... and the least absolute rise that counts, in ms (ignores noise on fast paths).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison (of every pair) as JSON.")
@click.option("--reports-dir", default=None, help="Where runs live (default: ./reports).")
def compare_command(
    baseline: str, run: str, latency_threshold: float, latency_floor_ms: float, as_json: bool, reports_dir: str | None
) -> None:
    """List what got worse and better from BASELINE to RUN; exit 1 on a regression, 2 when they do not compare.

    BASELINE and RUN are run directories (or their summary.json, a run id, `latest`) or reports directories: the
    runs of two reports directories are paired by topology, backend, kube-proxy mode, client addresses and test,
    and each pair is compared; a run without a partner is listed, not a regression.
    """
    from harness.report.compare import DirComparison, RunComparison, Tolerances, compare_dirs, compare_runs, is_run_dir

    result: RunComparison | DirComparison
    try:
        where = _reports_dir(reports_dir)
        tolerances = Tolerances(latency_threshold=latency_threshold, latency_floor_ms=latency_floor_ms)
        base_dir, run_dir = resolve_run(baseline, where), resolve_run(run, where)
        if is_run_dir(base_dir) and is_run_dir(run_dir):
            result = compare_runs(base_dir, run_dir, tolerances=tolerances)
        else:  # a reports directory on either side: a run directory on the other is a directory of one run
            result = compare_dirs(base_dir, run_dir, tolerances)
    except HarnessError as exc:
        raise _fail(exc) from exc
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else result.render_text())
    if result.exit_code:
        sys.exit(result.exit_code)
