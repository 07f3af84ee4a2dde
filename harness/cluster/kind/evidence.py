"""Evidence of a failed run on a real cluster, into ``reports/<run-id>/evidence/``.

When a run on kind fails, the cluster is usually deleted right after, and with it everything that could say why:
pod logs, events, what the controllers saw, and above all what kube-proxy programmed on each node (the iptables
``recent`` lists, nft sets or IPVS persistence that hold ClientIP affinity). So each piece is saved to a file
before anything is deleted. Collection is best effort: a piece that cannot be had leaves a file saying why, and
never stops the rest nor hides the failure that led here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.cluster.kind.kube import KubeOps
from harness.cluster.kind.preflight import CommandRunner
from harness.errors import HarnessError

__all__ = ["capture", "collect_events", "collect_logs", "format_events"]

log = logging.getLogger(__name__)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def collect_logs(kube: KubeOps, namespace: str, out_dir: Path) -> list[Path]:
    """Every container's log of every pod in ``namespace`` (and the previous container's, after a restart)."""
    written = []
    try:
        pods = kube.pods(namespace, "")
    except HarnessError as exc:
        return [_write(out_dir / "pods" / "ERROR.txt", f"could not list the pods: {exc}\n")]
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name", ""))
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        restarts = {
            c.get("name"): int(c.get("restartCount", 0))
            for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
        }
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cname = str(container.get("name", ""))
            for previous in (False, True) if restarts.get(cname) else (False,):
                suffix = ".previous.log" if previous else ".log"
                try:
                    text = kube.pod_log(namespace, name, cname, previous)
                except HarnessError as exc:
                    text = f"could not read the log: {exc}\n"
                written.append(_write(out_dir / "pods" / name / f"{cname}{suffix}", text))
    return written


def format_events(events: Sequence[dict[str, Any]]) -> str:
    def when(event: dict[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")

    lines = []
    for event in sorted(events, key=when):
        obj = event.get("involvedObject") or {}
        count = event.get("count") or 1
        lines.append(
            f"{when(event)} {event.get('type', '')} {event.get('reason', '')} "
            f"{obj.get('kind', '')}/{obj.get('name', '')} (x{count}): {str(event.get('message', '')).strip()}"
        )
    return "\n".join(lines) + "\n"


def collect_events(kube: KubeOps, namespace: str, out_dir: Path) -> Path:
    try:
        text = format_events(kube.events(namespace))
    except HarnessError as exc:
        text = f"could not list the events: {exc}\n"
    return _write(out_dir / "events.txt", text)


def capture(run: CommandRunner, argv: Sequence[str], out: Path, *, doing: str, timeout: float) -> Path:
    """Run a command and keep what it printed; a failure keeps its command line and output instead."""
    try:
        text = run(argv, doing=doing, timeout=timeout)
    except HarnessError as exc:
        log.info("evidence: %s", exc)
        text = f"{exc}\n"
    return _write(out, text)
