"""Ctrl-C and SIGTERM: a run stops at any moment, cleans up everything it started, and says so once.

Python's own SIGINT handling raises `KeyboardInterrupt` in whatever Python code the main thread runs when the
signal lands. Where that code is a weakref callback or a ``__del__`` (logging's handler clean-up is one), the
exception is printed as "ignored" and the program carries on as if nothing happened; where it is the wait for a
child being forked, the child is started and never tracked. So the harness handles both signals itself:

- the first signal is *recorded* and raised as `Interrupted` (a `KeyboardInterrupt`, so that everything that
  already stops for Ctrl-C stops for it, pytest included), unless the main thread is inside `deferred()` (a child
  being started and registered), when it is raised as that section ends;
- a raise that was swallowed is raised again at the next `check()`, which every polling loop of the harness calls
  (the swarm's, `wait_until`'s): a recorded signal cannot be lost;
- inside `stopping()` (clean-up after the first signal, or a run's own teardown) a further signal is noted and
  clean-up goes on: a second Ctrl-C does not leave half a cluster behind. A signal that arrives during a teardown
  that was not interrupted is raised when the teardown is done.

The exit code is 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "Interrupted",
    "check",
    "deferred",
    "exit_code",
    "finished",
    "install",
    "interrupted_line",
    "requested",
    "signal_name",
    "signal_number",
    "signal_of",
    "stopping",
]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for with a signal (SIGINT or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received (until `reset`)
        self.raised = False  # Interrupted for it has left the handler or `check` at least once
        self.defer = 0  # depth of `deferred()` sections
        self.stopping = 0  # depth of `stopping()` sections
        self.late: int | None = None  # a signal that arrived inside `stopping()` before any other
        self.installed = False
        self.raising = True  # False: the handler only records; the host polls `requested()` / `check()`


_state = _State()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signal_number(name: object) -> int | None:
    """The number of a signal named as `signal_name` names it (a summary's ``interrupted``); None for None."""
    if name is None:
        return None
    try:
        return int(signal.Signals[str(name)])
    except KeyError:
        return int(signal.SIGINT)  # a name this Python does not know: still an interrupted run


def signal_of(exc: BaseException) -> int:
    """The signal an interrupt stands for: its own, SIGINT for a plain KeyboardInterrupt."""
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


def exit_code(exc: BaseException) -> int:
    """The exit code for an interrupted run: 128 + the signal (130 for a plain KeyboardInterrupt)."""
    return 128 + signal_of(exc)


def interrupted_line(exc: BaseException) -> str:
    """The one line an interrupted command prints: which signal, that everything is stopped, what was kept
    (`harness.lifecycle.Run.stop_interrupted` puts the summary's path and its sessions on the exception)."""
    what = signal_name(signal_of(exc))
    line = f"interrupted ({what}): everything this run started has been stopped"
    summary = getattr(exc, "summary_path", None)
    if summary is not None:
        line += f"; {getattr(exc, 'sessions', 0)} sessions measured so far, marked interrupted in {summary}"
    return line


def requested() -> int | None:
    """The signal that asked the harness to stop, if one did."""
    return _state.signum


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state.stopping:
        if _state.signum is None and _state.late is None:
            _state.late = signum
        else:
            print(f"\n{signal_name(signum)}: still stopping what the run started…", file=sys.stderr, flush=True)
        return
    if _state.signum is None:
        _state.signum = signum
    if _state.defer or not _state.raising:
        return
    _state.raised = True
    raise Interrupted(_state.signum)


def install(*, again: bool = False, raising: bool = True) -> None:
    """Handle SIGINT and SIGTERM as above (from the main thread; elsewhere nothing). A second call does nothing
    unless ``again``: for a host that installed handlers of its own since (Locust's SIGTERM handler). With
    ``raising=False`` the handler only records the signal and the host acts on it where it polls (`check()`,
    `requested()`): under gevent, an exception raised in whichever greenlet the signal lands in is printed with
    its traceback before it reaches the main one."""
    _state.raising = raising
    if _state.installed and not again:
        return
    try:
        for signum in SIGNALS:
            signal.signal(signum, _handler)
    except ValueError:  # not the main thread (under gevent, a greenlet of it is: signal.signal knows best)
        return
    _state.installed = True


def _after_end(signum: int, _frame: FrameType | None) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        print(
            f"interrupted ({signal_name(signum)}) after the command had finished: nothing was running", file=sys.stderr
        )
        sys.stderr.flush()
    os._exit(128 + signum)


def finished() -> None:
    """The command is done (its output written, everything it started stopped): a signal from now on ends the
    process at once, with 128 + the signal, saying so, instead of raising into the interpreter's shutdown."""
    with contextlib.suppress(ValueError):
        for signum in SIGNALS:
            signal.signal(signum, _after_end)
    _state.installed = False


def uninstall() -> None:
    """Back to Python's defaults (for tests)."""
    if not _state.installed:
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _state.installed = False
    reset()


def reset() -> None:
    """Forget a signal already handled (a process that goes on after an interrupted run, such as pytest's)."""
    _state.signum = _state.late = None
    _state.raised = False


def check() -> None:
    """Raise `Interrupted` if a signal asked to stop and nothing is handling it yet (outside `stopping()` and
    `deferred()`, from the main thread)."""
    if (
        _state.signum is not None
        and not _state.stopping
        and not _state.defer
        and threading.current_thread() is threading.main_thread()
    ):
        _state.raised = True
        raise Interrupted(_state.signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section a signal must not cut in two (a child started and registered): the signal is raised after it."""
    _state.defer += 1
    try:
        yield
    finally:
        _state.defer -= 1
    check()


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """Clean-up: signals inside are noted, not raised; the first of them is raised once the clean-up is done
    (when no earlier signal is being handled already)."""
    _state.stopping += 1
    try:
        yield
    finally:
        _state.stopping -= 1
    if not _state.stopping and _state.late is not None and _state.signum is None:
        _state.signum, _state.late = _state.late, None
        check()
