"""Running out of file descriptors is the harness's fault, never the system under test's.

When the load balancer or a node's kube-proxy model cannot open a socket (``EMFILE`` / ``ENFILE``: its open-files
limit, or the kernel's), the client sees a reset or a refused connection, which the checks would read as the
topology's failure. And once libuv's accept fails that way, uvloop closes the listening socket: every later
connection is refused. So every such error is counted here, per process, and the network daemon's ``snapshot``
carries the count; the process watch turns the first one into the run's harness failure (not judged).
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import time
from typing import Any

__all__ = ["EXHAUSTED", "exception_handler", "note", "snapshot"]

EXHAUSTED = (errno.EMFILE, errno.ENFILE)


class _Tally:
    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.error: str | None = None


_TALLY = _Tally()


def note(exc: BaseException, where: str) -> bool:
    """Count ``exc`` if it is descriptor exhaustion (True then); ``where`` names what failed."""
    if not isinstance(exc, OSError) or exc.errno not in EXHAUSTED:
        return False
    _TALLY.count += 1
    if _TALLY.first is None:
        _TALLY.first = time.time()
        _TALLY.error = f"{where}: {exc.strerror or exc}"
    return True


def exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An event loop's exception handler that counts exhaustion (a failed accept, a listener closed on it), then
    does what the default handler does."""
    exc = context.get("exception")
    if exc is not None:
        note(exc, str(context.get("message") or "accept"))
    loop.default_exception_handler(context)


def snapshot() -> dict[str, Any]:
    """This process's open-files limit, descriptors open now, and the exhaustion errors so far."""
    try:
        open_now: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = None
    return {
        "limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "open": open_now,
        "exhausted": _TALLY.count,
        "first_exhausted": _TALLY.first,
        "error": _TALLY.error,
    }
