"""``scripts/nightly`` on the local backend, as CI runs it on every push: a first night makes a baseline, a clean
night compares with it and passes, a night with a planted regression (nginx-hash's tier loses its hash) is
caught by the gate. The kind backend runs the same script in the nightly workflow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("local_only"), pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
# latency on a shared CI machine is noise at this size: the gate is exercised on verdicts
NIGHT = ["--backend", "local", "--topology", "nginx-hash", "--only-matrix", "--duration", "12s"]
COMPARE = ["--", "--latency-threshold", "100"]


def runs(reports: Path) -> list[Path]:
    return [p for p in reports.glob("*/summary.json") if not p.parent.is_symlink()]  # not reports/latest


def night(reports: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "nightly"), *NIGHT, "--reports", str(reports), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )


def test_the_nightly_gate_passes_a_clean_night_and_catches_a_planted_regression(tmp_path: Path) -> None:
    first = night(tmp_path / "n1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "nothing to compare with" in first.stdout
    (base,) = runs(tmp_path / "n1")
    assert json.loads(base.read_text())["case"].endswith("test_verdict_equals_expected[nginx-hash]")

    clean = night(tmp_path / "n2", "--baseline", str(tmp_path / "n1"), *COMPARE)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-2000:]
    assert "harness compare" in clean.stdout and "nightly: passed" in clean.stdout

    planted = night(tmp_path / "n3", "--baseline", str(tmp_path / "n1"), "--plant-regression", *COMPARE)
    assert planted.returncode == 1, planted.stdout[-3000:] + planted.stderr[-2000:]
    assert "nightly: FAILED" in planted.stdout
    (run,) = runs(tmp_path / "n3")
    summary = json.loads(run.read_text())
    assert summary["checks"]["continuity"]["measured"] == "fail"  # nginx round-robined: a real regression
    tail = planted.stdout[planted.stdout.index("harness compare") :]
    assert "nginx-hash" in tail and "continuity" in tail, tail[-3000:]  # the gate names it
    assert not list(tmp_path.rglob("kubeconfig"))


@pytest.mark.parametrize("expect_continuity", ["fail", "pass"])
def test_a_run_whose_verdict_differs_collects_evidence_while_its_cluster_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expect_continuity: str
) -> None:
    """no-affinity breaks continuity; expected to pass, its verdict differs and evidence is collected (the cluster
    still up); expected to fail, as built, nothing is collected."""
    from harness import lifecycle
    from harness.cluster.local.backend import LocalCluster
    from harness.topology import load_topology

    collected: list[tuple[str, bool]] = []

    class WithEvidence(LocalCluster):
        def collect_evidence(self, reason: str) -> Path:
            collected.append((reason, self.pod_answers(self.pods("app")[0]) is True))  # up while collecting
            return self.run_dir / "evidence"

    monkeypatch.setattr(lifecycle, "LocalCluster", WithEvidence)
    base = load_topology("no-affinity")
    expected = base.expected.model_copy(update={"continuity": expect_continuity})
    topology = base.model_copy(update={"expected": expected})
    options = lifecycle.SwarmOptions(users=10, spawn_rate=10, duration=8, calls=1, progress_every=1000)
    judgement = lifecycle.run_topology(topology, options, seed=12, reports_dir=tmp_path, echo=lambda _: None)
    assert judgement.summary["checks"]["continuity"]["measured"] == "fail"
    if expect_continuity == "pass":
        assert judgement.exit_code == 1 and collected == [("verdict differs from expected", True)]
        assert "evidence: " in judgement.text
    else:
        assert judgement.exit_code == 0 and collected == []
