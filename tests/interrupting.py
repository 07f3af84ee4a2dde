"""Interrupting a command as a user does, and looking for what it left behind.

`interrupt` runs a command on a pseudo-terminal (its controlling terminal, the command in the foreground process
group), waits, then types Ctrl-C into the terminal (the line discipline sends SIGINT to the foreground group: a
real Ctrl-C, not a signal sent to one pid) or sends SIGTERM to the process, optionally a second Ctrl-C a moment
later, and reads the command to its end. `Leftovers` are what the machine has afterwards that it did not have
before: processes carrying the run's id (or any run id), TCP listeners on loopback, the harness's control
sockets, files in the temporary directory.

Used by ``tests/e2e/test_interrupts.py`` (a few moments, in CI) and ``benchmarks/interrupts.py`` (a hundred, by
hand).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.cluster.local.processes import find_run_processes

__all__ = ["Leftovers", "Outcome", "Snapshot", "interrupt"]

ROOT = Path(__file__).resolve().parents[1]
HARNESS = [str(Path(sys.executable).with_name("harness"))]  # the console script, as users run it
_RUN_LINE = re.compile(r"\brun (\d{8}-\d{6}-[\w.-]+-[0-9a-f]{4,})\b")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


@dataclass(frozen=True)
class Snapshot:
    """What is there now: run processes, loopback TCP listeners, the harness's abstract control sockets, temp files."""

    processes: dict[int, str]
    listeners: frozenset[tuple[str, int]]
    control_sockets: frozenset[str]
    temp_files: frozenset[str]

    @classmethod
    def take(cls) -> Snapshot:
        listeners = set()
        with contextlib.suppress(psutil.Error):
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and str(conn.laddr.ip).startswith("127."):
                    listeners.add((str(conn.laddr.ip), int(conn.laddr.port)))
        sockets = set()
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
                path = line.split()[-1] if len(line.split()) >= 8 else ""
                if "sticky-harness/" in path:
                    sockets.add(path)
        return cls(
            processes=find_run_processes(),
            listeners=frozenset(listeners),
            control_sockets=frozenset(sockets),
            temp_files=frozenset(os.listdir(tempfile.gettempdir())),
        )


@dataclass
class Leftovers:
    processes: dict[int, str] = field(default_factory=dict)
    listeners: list[tuple[str, int]] = field(default_factory=list)
    control_sockets: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.processes or self.listeners or self.control_sockets or self.temp_files)

    def describe(self) -> str:
        parts = []
        if self.processes:
            names = []
            for pid in self.processes:
                with contextlib.suppress(psutil.Error):
                    names.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:80]}")
            parts.append("processes: " + "; ".join(names or [str(p) for p in self.processes]))
        if self.listeners:
            parts.append("listeners: " + ", ".join(f"{h}:{p}" for h, p in self.listeners))
        if self.control_sockets:
            parts.append("control sockets: " + ", ".join(self.control_sockets))
        if self.temp_files:
            parts.append("temporary files: " + ", ".join(self.temp_files))
        return "; ".join(parts) or "nothing"

    @classmethod
    def since(cls, before: Snapshot, ignore_temp: frozenset[str] = frozenset()) -> Leftovers:
        now = Snapshot.take()
        return cls(
            processes={p: r for p, r in now.processes.items() if p not in before.processes},
            listeners=sorted(now.listeners - before.listeners),
            control_sockets=sorted(now.control_sockets - before.control_sockets),
            temp_files=sorted(now.temp_files - before.temp_files - ignore_temp),
        )


@dataclass
class Outcome:
    argv: list[str]
    at: float  # seconds after the start when the first interrupt was sent
    how: str  # "ctrl-c" or "sigterm"
    code: int | None  # the exit code (128 + n when it died of signal n); None if it had to be killed
    output: str
    seconds_to_exit: float  # from the first interrupt to the command's end
    phase: str  # the last line the command printed before the interrupt
    run_id: str | None
    leftovers: Leftovers
    summary: dict[str, object] | None  # the run directory's summary.json, if there is one

    @property
    def lines_after(self) -> list[str]:
        """What the command printed after the interrupt, one entry per non-empty line."""
        return [line for line in self.output.split("\n<interrupt>\n", 1)[-1].splitlines() if line.strip()]


def _read(fd: int, until: float, out: list[str]) -> bool:
    """Read the terminal until ``until`` (monotonic); False once the command closed it."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return True
        ready, _, _ = select.select([fd], [], [], min(left, 0.1))
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other side is gone
            return False
        if not data:
            return False
        out.append(_ANSI.sub("", data.decode(errors="replace")).replace("\r\n", "\n"))


def interrupt(
    argv: list[str],
    at: float,
    *,
    reports_dir: Path,
    how: str = "ctrl-c",
    after: str | None = None,
    again_after: float | None = None,
    timeout: float = 180.0,
    ignore_temp: frozenset[str] = frozenset(),
) -> Outcome:
    """Run ``argv`` on a pseudo-terminal, interrupt it ``at`` seconds in (with ``after``, a regular expression:
    ``at`` seconds after a line matching it was printed), and a second time ``again_after`` seconds later; read it
    to its end and look for what it left behind."""
    before = Snapshot.take()
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", TERM="dumb")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal, it leads the foreground group
        try:
            os.chdir(ROOT)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    out: list[str] = []
    started = time.monotonic()
    open_ = True
    if after is not None:
        wanted = re.compile(after, re.MULTILINE)
        while open_ and not wanted.search("".join(out)) and time.monotonic() < started + timeout:
            open_ = _read(fd, time.monotonic() + 0.05, out)
        started = time.monotonic()
    open_ = open_ and _read(fd, started + at, out)
    phase = next((line for line in reversed("".join(out).splitlines()) if line.strip()), "")
    sent = time.monotonic()
    if open_:
        if how == "ctrl-c":
            os.write(fd, b"\x03")
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    out.append("\n<interrupt>\n")
    if again_after is not None and open_:
        open_ = _read(fd, time.monotonic() + again_after, out)
        if open_:
            os.write(fd, b"\x03")
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        open_ = _read(fd, min(deadline, time.monotonic() + 1.0), out)
    code: int | None
    if open_:  # it did not stop: kill it so that the next moment starts clean, and say so
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        code = None
    else:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
    ended = time.monotonic()
    with contextlib.suppress(OSError):
        os.close(fd)
    output = "".join(out)
    found = _RUN_LINE.search(output)
    run_id = found.group(1) if found else None
    summary = None
    if run_id is not None:
        with contextlib.suppress(OSError, ValueError):
            summary = json.loads((reports_dir / run_id / "summary.json").read_text(encoding="utf-8"))
    return Outcome(
        argv=list(argv),
        at=at,
        how=how,
        code=code,
        output=output,
        seconds_to_exit=ended - sent,
        phase=phase,
        run_id=run_id,
        leftovers=Leftovers.since(before, ignore_temp),
        summary=summary,
    )
