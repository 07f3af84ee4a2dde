"""App pods as real processes: ``python -m harness.app`` on 127.0.0.1 with a free port, ready when a handshake
answers, stopped at teardown (also when the test failed). tests/client uses the same helper."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

HOST = "127.0.0.1"
PING_INTERVAL = 5.0  # short enough that a test never waits long on a long-poll that no one ends
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class Pod:
    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with requests.Session() as session:
            response = session.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=0.5)
    except requests.RequestException:
        return False
    return response.status_code == 200


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def app_pod(name: str, log_dir: Path, **env: str) -> Iterator[Pod]:
    """One app pod named ``name``; ``env`` adds to its environment (PING_INTERVAL, SIO_COOKIE, …)."""
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    full_env = {
        **os.environ,
        "HOST": HOST,
        "PORT": str(port),
        "POD_NAME": name,
        "PING_INTERVAL": f"{PING_INTERVAL:g}",
        "PING_TIMEOUT": f"{PING_INTERVAL:g}",
        **env,
    }
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.app"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    pod = Pod(name, HOST, port, process, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(pod.url):
            if process.poll() is not None:
                raise AssertionError(f"app pod {name} exited with {process.returncode}:\n{pod.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"app pod {name} did not answer a handshake:\n{pod.log()}")
            time.sleep(0.05)
        yield pod
    finally:
        stop(process)


@pytest.fixture(scope="package")
def pod_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    with app_pod("A", tmp_path_factory.mktemp("pods")) as pod:
        yield pod


@pytest.fixture(scope="package")
def pod_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    with app_pod("B", tmp_path_factory.mktemp("pods"), SIO_COOKIE="io") as pod:
        yield pod
