"""Preflight of the kind backend: everything a kind run needs from the machine, checked before anything is made.

A kind cluster that fails to come up halfway costs minutes and leaves containers behind, and its errors rarely
name the cause (a missing binary, an old kind, a Docker daemon that does not answer, or inotify limits so low that
kubelets in the node containers fail with "too many open files", as kind's known-issues page describes). So every
check runs, and each failure is one line that says what is wrong and the command that fixes it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.cluster.kind.config import KIND_VERSION
from harness.errors import HarnessError, SetupError

__all__ = [
    "DOCKER_MIN",
    "INOTIFY_MIN",
    "KIND_MIN",
    "CommandRunner",
    "Finding",
    "PreflightError",
    "parse_version",
    "preflight",
    "require",
]

DOCKER_MIN = (20, 10, 0)  # kind runs nodes with --cgroupns=private: Docker API 1.41, Docker 20.10
KIND_MIN = (0, 25, 0)  # the release the pinned node image was built for; kubeProxyMode nftables needs 0.23
KUBERNETES_MINOR = 31  # kubectl within one minor version of the cluster, as Kubernetes' skew policy allows
INOTIFY_MIN = {"max_user_watches": 524288, "max_user_instances": 512}  # kind's known-issues page


class CommandRunner(Protocol):
    """Runs a command and returns its output; raises CommandError (or SetupError) when it fails."""

    def __call__(self, argv: Sequence[str], *, doing: str, timeout: float = ...) -> str: ...


class PreflightError(SetupError):
    """The machine lacks something a kind run needs; the message has one line per missing piece with its fix."""


@dataclass(frozen=True, slots=True)
class Finding:
    what: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok: {self.what}: {self.detail}"
        return f"missing: {self.what}: {self.detail}; fix: {self.fix}"


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(str(v) for v in version)


def _tool_version(
    tool: str, argv_tail: Sequence[str], run: CommandRunner, which: Callable[[str], str | None], fix: str
) -> tuple[Finding | None, tuple[int, int, int] | None, str]:
    binary = which(tool)
    if binary is None:
        return Finding(tool, False, "not found on PATH", fix), None, ""
    try:
        output = run([binary, *argv_tail], doing=f"asking {tool} for its version", timeout=20.0)
    except HarnessError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no output"
        return Finding(tool, False, f"`{tool} {' '.join(argv_tail)}` failed ({first})", fix), None, ""
    return None, parse_version(output), output


def _check_docker(run: CommandRunner, which: Callable[[str], str | None]) -> list[Finding]:
    fix = "install Docker Engine 20.10 or newer (https://docs.docker.com/engine/install/)"
    failed, version, _ = _tool_version("docker", ["--version"], run, which, fix)
    if failed is not None:
        return [failed]
    if version is None or version < DOCKER_MIN:
        shown = _dotted(version) if version else "an unknown version"
        return [Finding("docker", False, f"{shown} is too old", fix)]
    findings = [Finding("docker", True, _dotted(version))]
    try:
        server = run([str(which("docker")), "info", "--format", "{{.ServerVersion}}"], doing="asking the docker daemon")
        findings.append(Finding("docker daemon", True, server.strip() or "answers"))
    except HarnessError:
        findings.append(
            Finding(
                "docker daemon",
                False,
                "`docker info` got no answer from the daemon",
                "start it (`sudo systemctl start docker`) and make sure your user may use it (`docker info`)",
            )
        )
    return findings


def _check_kind(run: CommandRunner, which: Callable[[str], str | None], pinned: str) -> Finding:
    fix = f"install kind {pinned}: `go install sigs.k8s.io/kind@{pinned}` or https://kind.sigs.k8s.io/dl/{pinned}/kind-linux-amd64"
    failed, version, _ = _tool_version("kind", ["version"], run, which, fix)
    if failed is not None:
        return failed
    if version is None or version < KIND_MIN:
        shown = _dotted(version) if version else "an unknown version"
        return Finding("kind", False, f"{shown} is older than {_dotted(KIND_MIN)}", fix)
    note = "" if f"v{_dotted(version)}" == pinned else f" (the pinned node image was built for {pinned})"
    return Finding("kind", True, f"{_dotted(version)}{note}")


def _check_kubectl(run: CommandRunner, which: Callable[[str], str | None], *, skew: bool = True) -> Finding:
    fix = f"install kubectl 1.{KUBERNETES_MINOR} (https://kubernetes.io/docs/tasks/tools/)"
    failed, version, output = _tool_version("kubectl", ["version", "--client", "-o", "json"], run, which, fix)
    if failed is not None:
        return failed
    with contextlib.suppress(ValueError, KeyError, TypeError):  # the JSON's gitVersion; the regex found a fallback
        version = parse_version(json.loads(output)["clientVersion"]["gitVersion"]) or version
    if skew and (version is None or version[0] != 1 or abs(version[1] - KUBERNETES_MINOR) > 1):
        shown = _dotted(version) if version else "an unknown version"
        return Finding(
            "kubectl", False, f"{shown} is outside the skew Kubernetes supports for a 1.{KUBERNETES_MINOR} cluster", fix
        )
    return Finding("kubectl", True, _dotted(version) if version else "found")


def _check_inotify(inotify_dir: Path) -> list[Finding]:
    findings = []
    for name, minimum in INOTIFY_MIN.items():
        key = f"fs.inotify.{name}"
        fix = f"`sudo sysctl {key}={minimum}` (and add `{key} = {minimum}` to /etc/sysctl.d/99-kind.conf to keep it)"
        try:
            value = int((inotify_dir / name).read_text().strip())
        except (OSError, ValueError) as exc:
            findings.append(Finding(key, False, f"cannot read it ({exc})", fix))
            continue
        if value < minimum:
            findings.append(Finding(key, False, f"{value} is below {minimum}; kubelets in kind nodes run out", fix))
        else:
            findings.append(Finding(key, True, str(value)))
    return findings


def preflight(
    *,
    run: CommandRunner,
    path: str | None = None,
    inotify_dir: Path = Path("/proc/sys/fs/inotify"),
    kind_pinned: str = KIND_VERSION,
    backend: str = "kind",
) -> list[Finding]:
    """Check every piece; ``path`` is the PATH to search (None: the environment's). The kubeconfig backend needs
    only kubectl (for evidence: ``kubectl describe``), of any version: its cluster's version is not ours to pin."""

    def which(tool: str) -> str | None:
        return shutil.which(tool, path=path)

    if backend != "kind":
        return [_check_kubectl(run, which, skew=False)]
    return [
        *_check_docker(run, which),
        _check_kind(run, which, kind_pinned),
        _check_kubectl(run, which),
        *_check_inotify(inotify_dir),
    ]


def require(findings: Sequence[Finding]) -> None:
    """Raise PreflightError listing every failed check, one line each with its fix."""
    failed = [f for f in findings if not f.ok]
    if failed:
        lines = "\n".join(f"  - {f.line()}" for f in failed)
        raise PreflightError(f"the kind backend cannot run on this machine yet:\n{lines}")
