"""Wires pytest to the harness: command-line options, the e2e marker, and fixtures that are thin shells over
the library's context managers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import interrupts


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sticky-harness")
    group.addoption("--backend", default="local", choices=["local", "kind"], help="cluster backend for e2e tests")
    group.addoption("--keep-cluster", action="store_true", help="kind: keep the cluster after the tests")
    group.addoption("--kind-config", default=None, help="kind: the kind config file (clusters/kind/*.yaml)")
    group.addoption(
        "--kube-proxy-mode",
        default="iptables",
        choices=["iptables", "nftables", "ipvs"],
        help="kind: the cluster's kube-proxy mode (picks clusters/kind/*.yaml unless --kind-config; recorded per run)",
    )
    group.addoption("--topology", action="append", default=[], help="limit e2e tests to these topologies")
    group.addoption("--keep-reports", action="store_true", help="write e2e runs to ./reports instead of tmp")
    group.addoption("--reports-dir", default=None, help="write e2e runs to this directory (implies keeping them)")
    group.addoption(
        "--plant-regression",
        action="store_true",
        help="the nightly gate's negative control: nginx-hash's tier loses its hash (nginx round-robins)",
    )
    group.addoption("--e2e-duration", default="25s", help="swarm duration of each e2e run of the matrix")
    group.addoption(
        "--session-length", default="0s", help="how long each session of the e2e matrix stays connected (0: short)"
    )


def pytest_configure(config: pytest.Config) -> None:
    # Ctrl-C and SIGTERM as the harness handles them (harness.interrupts): both stop the session through pytest's
    # own KeyboardInterrupt path, so every fixture's cluster is taken down; the exit code is set below
    interrupts.install()
    if config.getoption("--plant-regression"):
        import tests.e2e

        tests.e2e.PLANT_REGRESSION = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    signum = interrupts.requested()
    if signum is not None and exitstatus == pytest.ExitCode.INTERRUPTED:
        session.exitstatus = 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM, as the harness's own commands


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--topology"))
    if not wanted:
        return
    skip = pytest.mark.skip(reason="not among the --topology options")
    for item in items:
        callspec = getattr(item, "callspec", None)
        topology = callspec.params.get("topology_name") if callspec else None
        if topology is not None and topology not in wanted:
            item.add_marker(skip)


@pytest.fixture
def e2e_reports_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.config.getoption("--reports-dir"):
        return Path(request.config.getoption("--reports-dir")).resolve()
    if request.config.getoption("--keep-reports"):
        from harness.runs import default_reports_dir

        return default_reports_dir()
    return tmp_path / "reports"


@pytest.fixture
def e2e_backend(request: pytest.FixtureRequest) -> Any:
    """The backend of e2e runs, from --backend / --keep-cluster / --kind-config."""
    from harness.runner import BackendOptions

    kind_config = request.config.getoption("--kind-config")
    return BackendOptions(
        name=request.config.getoption("--backend"),
        keep_cluster=request.config.getoption("--keep-cluster"),
        kind_config=Path(kind_config).resolve() if kind_config else None,
        proxy_mode=request.config.getoption("--kube-proxy-mode"),
    )


@pytest.fixture
def local_only(e2e_backend: Any) -> None:
    if e2e_backend.name != "local":
        pytest.skip("this test runs on the local backend only")


@pytest.fixture
def e2e_duration(request: pytest.FixtureRequest) -> float:
    from harness.topology import parse_duration

    return parse_duration(request.config.getoption("--e2e-duration"))


@pytest.fixture
def e2e_session_length(request: pytest.FixtureRequest) -> float:
    from harness.topology import parse_duration

    return parse_duration(request.config.getoption("--session-length"))
