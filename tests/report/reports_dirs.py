"""Two nights of reports directories for the comparison tests, as the nightly job leaves them: several runs each
(other topologies, a client-address mode, kind runs per kube-proxy mode), ``latest``, ``.clusters/`` links and a
second name for one run, none of which is a run of its own.

The local runs are written by the real ``judge`` (tests.report); the other runs are copies of them with summary
keys edited by hand, the way a kind run or a newer harness writes them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.report import failing_run, lucky_run, scaling_run

DAY_S = 86_400.0
FIRST, SECOND = "20240101", "20240102"
KIND_CASE = "test_negative_control[no-affinity]"

# every run of a night, by the id of its first-night run
SCALING = "20240101-000000-nginx-hash-aaaa"
SEED = "20240101-000100-seed-bbbb"
NEGATIVE = "20240101-000200-no-affinity-cccc"
SEED_SHARED = "20240101-000500-seed-eeee"
KIND_IPTABLES = "20240101-000600-no-affinity-1111"
KIND_IPVS = "20240101-000700-no-affinity-2222"
RUNS = (SCALING, SEED, NEGATIVE, SEED_SHARED, KIND_IPTABLES, KIND_IPVS)

# the table's name of each run's pair
PAIRS = {
    SCALING: "nginx-hash, local, unique addresses, events 30s scale app 5 + 60s kill app",
    SEED: "seed, local, unique addresses, no events",
    NEGATIVE: "no-affinity, local, unique addresses, no events",
    SEED_SHARED: "seed, local, shared addresses, no events",
    KIND_IPTABLES: f"no-affinity, kind/iptables, unique addresses, case {KIND_CASE}",
    KIND_IPVS: f"no-affinity, kind/ipvs, unique addresses, case {KIND_CASE}",
}


def next_id(run_id: str) -> str:
    """The id of the same run one night later."""
    return run_id.replace(FIRST, SECOND, 1)


def edit_summary(run_dir: Path, **changes: Any) -> dict[str, Any]:
    path = run_dir / "summary.json"
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    summary.update(changes)
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def copy_run(run_dir: Path, reports: Path, name: str, *, later_s: float = 0.0, **changes: Any) -> Path:
    """A copy of a run under another id, started ``later_s`` later, with summary keys changed."""
    copy = reports / name
    shutil.copytree(run_dir, copy, symlinks=True)
    summary = json.loads((copy / "summary.json").read_text(encoding="utf-8"))
    edit_summary(
        copy,
        run_id=name,
        report_dir=str(copy),
        started=summary["started"] + later_s,
        ended=summary["ended"] + later_s,
        **changes,
    )
    return copy


def link(at: Path, target: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(os.path.relpath(target, at.parent))


def first_night(reports: Path) -> Path:
    """The baseline: every run of RUNS. ``latest`` is a copy of a run (an artefact upload follows links)."""
    scaling_run(reports, SCALING)
    seed = lucky_run(reports, SEED)
    negative = failing_run(reports, NEGATIVE)
    copy_run(seed, reports, SEED_SHARED, later_s=500, client_addresses="shared")
    for name, mode in ((KIND_IPTABLES, "iptables"), (KIND_IPVS, "ipvs")):
        copy_run(negative, reports, name, later_s=600, backend="kind", kube_proxy_mode=mode, case=KIND_CASE)
    (reports / "latest").unlink()
    shutil.copytree(reports / KIND_IPVS, reports / "latest")
    return reports


def second_night(baseline: Path, reports: Path) -> Path:
    """The same runs one night later, unchanged; ``latest``, a ``.clusters/`` link and a second name of one run
    point at runs listed under their own names."""
    reports.mkdir(parents=True)
    for name in RUNS:
        copy_run(baseline / name, reports, next_id(name), later_s=DAY_S)
    link(reports / "latest", reports / next_id(KIND_IPVS))
    link(reports / ".clusters" / "sticky", reports / next_id(KIND_IPVS))
    link(reports / "seed-run", reports / next_id(SEED))
    return reports


def plant_regression(run_dir: Path) -> None:
    """Continuity no longer meets its topology's expectation: where it should pass, violations go from 0 to 2 %
    (two regressions: the verdict and the rate); in a negative control, which should fail, it passes (one)."""
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    continuity = summary["checks"]["continuity"]
    if continuity["expected"] == "pass":
        continuity.update(measured="fail", matches=False, reason="12 of 600 judged sessions broke continuity")
        continuity["figures"].update(violations=12, violation_rate=0.02)
    else:
        continuity.update(measured="pass", matches=False, reason="0 of 600 judged sessions broke continuity")
        continuity["figures"].update(violations=0, violation_rate=0.0)
    edit_summary(run_dir, checks=summary["checks"], verdict="differs from expected", exit_code=1)
