"""Processes of the local backend: started with the run id in their environment, stopped as a group.

Every process a run starts carries ``HARNESS_RUN_ID`` in its environment and runs in its own process group, so
that it can be stopped with all its children (nginx workers, uvicorn) and so that a reaper can find what a killed
run left behind (``harness down --all``). A process started for an attached run also gets the kernel's
parent-death signal, so it ends even if the harness itself is killed with SIGKILL.

That signal belongs to the *thread* that forked the child, not to the process: a pod started from a short-lived
thread (a timeline's events thread) would be sent SIGTERM the moment that thread ends. So every attached process
is forked by one thread that lives as long as the harness process (`_Forker`), whichever thread asks for it.
Processes started for ``harness up`` (not attached) outlive the harness on purpose and are forked directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import queue
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from harness import interrupts
from harness.errors import CommandError, SetupError

__all__ = [
    "ManagedProcess",
    "find_orphans",
    "find_run_processes",
    "kill_group",
    "kill_groups",
    "raise_open_files_limit",
    "run_checked",
    "spawn",
    "stop_spawned",
    "stop_together",
    "wait_until",
]

log = logging.getLogger(__name__)

RUN_ID_ENV = "HARNESS_RUN_ID"
OWNER_ENV = "HARNESS_OWNER_PID"  # the harness process a run's process belongs to (absent for `harness up`'s)
_PR_SET_PDEATHSIG = 1
OPEN_FILES_WANTED = 1 << 20  # descriptors a swarm of 10,000 held sessions needs: several per session per process
T = TypeVar("T")
_SPAWNED: dict[int, tuple[str, ManagedProcess]] = {}  # pid → (run id, what `spawn` started for it here)


@functools.cache
def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise this process's open-files limit (inherited by every process it starts) towards ``wanted``: the hard
    limit too where the kernel allows it (root, up to ``fs.nr_open``), else the soft limit to the hard one.
    Returns the soft limit now in force; done once per process (every `spawn` asks). A held WebSocket session
    costs a descriptor in the client, two in each part of the network daemon, two in the proxy tier and one in
    the app: shells' usual 1,024 or 20,000 stop a swarm early."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(OSError, ValueError):
        wanted = min(wanted, int(Path("/proc/sys/fs/nr_open").read_text()))
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (OSError, ValueError):
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        if target > soft:
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _die_with(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the harness died before the signal was armed
            os._exit(1)

    return preexec


class _Forker:
    """The one thread that forks attached processes, for as long as the harness process lives.

    Linux sends the parent-death signal when the forking thread ends; this thread ends only with the process, so
    a child lives until it is stopped on purpose or the harness itself goes (Ctrl-C, crash, SIGKILL)."""

    _lock = threading.Lock()
    _instance: _Forker | None = None

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = queue.Queue()
        self.thread = threading.Thread(target=self._serve, name="harness-forker", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _Forker:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def _serve(self) -> None:
        while True:
            work, reply = self._requests.get()
            try:
                reply.put((True, work()))
            except BaseException as exc:
                reply.put((False, exc))

    def call(self, work: Callable[[], T]) -> T:
        if threading.current_thread() is self.thread:
            return work()
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
        self._requests.put((work, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return cast(T, value)


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_path: Path
    pid: int
    popen: subprocess.Popen[bytes] | None = None  # None when attached to a process started by another harness
    stopping: bool = False  # stopped on purpose (an exit from then on is not news)

    def exit_status(self) -> int | None:
        """The exit status (negative: killed by that signal) once it has exited, if this process started it."""
        return self.popen.poll() if self.popen is not None else None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        self.stopping = True
        kill_group(self.pid, grace)
        _SPAWNED.pop(self.pid, None)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    run_id: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    attached: bool = True,
) -> ManagedProcess:
    """Start ``argv`` in its own process group with the run id in its environment, output to ``log_path``."""
    raise_open_files_limit()
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env[RUN_ID_ENV] = run_id
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def fork() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()) if attached else None,
            )

    if attached:
        full_env[OWNER_ENV] = str(os.getpid())
    # a signal must not land between the fork and the registration: the child would run untracked
    with interrupts.deferred():
        try:
            popen = _Forker.get().call(fork) if attached else fork()
        except FileNotFoundError as exc:
            raise SetupError(f"cannot start {name}: {argv[0]} not found ({exc.strerror})") from exc
        process = ManagedProcess(name, list(argv), log_path, popen.pid, popen)
        if attached:
            _SPAWNED[popen.pid] = (run_id, process)
    log.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
    return process


def stop_spawned(run_id: str, grace: float = 2.0) -> list[str]:
    """Stop every process this harness process started for run ``run_id`` (not for ``harness up``) that is
    still running and was not stopped on purpose: the last clean-up after an interrupt, whatever it cut short.
    Returns their names."""
    stopped = []
    for pid, (owner, process) in list(_SPAWNED.items()):
        if owner != run_id:
            continue
        if process.alive() and not process.stopping:
            process.stop(grace)
            stopped.append(process.name)
        _SPAWNED.pop(pid, None)
    return stopped


def kill_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left after ``grace`` seconds."""
    kill_groups([pid], grace)


def kill_groups(pids: Sequence[int], grace: float = 5.0) -> None:
    """`kill_group` for several groups at once: SIGTERM to all, one ``grace`` for all, SIGKILL to what is left
    (a teardown waits for its slowest process, not for the sum of them)."""
    groups: dict[int, int] = {}  # leader pid → pgid
    for pid in pids:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            continue
        if pgid != pid:  # not a group leader we started: signal just the process
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        groups[pid] = pgid
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        for pid, pgid in list(groups.items()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                del groups[pid]
                continue
            if _is_zombie(pid) and not _group_has_live_members(pgid, pid):
                del groups[pid]
        if groups:
            time.sleep(0.05)
    for pid, pgid in groups.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def stop_together(processes: Sequence[ManagedProcess], grace: float = 5.0) -> None:
    """Stop several processes at once (`kill_groups`), each marked as stopped on purpose first."""
    for process in processes:
        process.stopping = True
    kill_groups([p.pid for p in processes], grace)
    for process in processes:
        _SPAWNED.pop(process.pid, None)
        if process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=1)


def _group_has_live_members(pgid: int, leader: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and not _is_zombie(int(entry.name)):
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def _environ(pid: int) -> dict[bytes, bytes]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)


def find_run_processes(run_id: str | None = None) -> dict[int, str]:
    """Processes whose environment carries a harness run id (the given one, or any): pid → run id."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        value = _environ(int(entry.name)).get(RUN_ID_ENV.encode())
        if value is not None and (run_id is None or value.decode(errors="replace") == run_id):
            found[int(entry.name)] = value.decode(errors="replace")
    return found


def find_orphans() -> dict[int, str]:
    """Processes of runs whose harness process is gone (killed with SIGKILL before it could clean up): pid → run
    id. Processes of ``harness up`` clusters have no owner and are not orphans."""
    orphans = {}
    for pid, run_id in find_run_processes().items():
        owner = _environ(pid).get(OWNER_ENV.encode())
        if owner is None or not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            orphans[pid] = run_id
        except PermissionError:
            continue
        else:
            if _is_zombie(int(owner)):
                orphans[pid] = run_id
    return orphans


def run_checked(argv: Sequence[str], *, doing: str, timeout: float = 30.0) -> str:
    """Run a short command; raise CommandError with its command line and output if it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise SetupError(f"{doing}: {argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(list(argv), -1, f"timed out after {timeout} s", doing) from exc
    if done.returncode != 0:
        raise CommandError(list(argv), done.returncode, done.stdout + done.stderr, doing)
    return done.stdout + done.stderr


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_fail: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until it holds; raise SetupError naming ``what`` when ``timeout`` runs out."""
    deadline = clock() + timeout
    while True:
        interrupts.check()
        if predicate():
            return
        if clock() >= deadline:
            detail = on_fail() if on_fail else ""
            raise SetupError(f"{what} did not happen within {timeout:g} s" + (f":\n{detail}" if detail else ""))
        sleep(interval)
