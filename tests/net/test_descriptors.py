"""Descriptor exhaustion is counted (the harness's fault); other socket errors are not."""

from __future__ import annotations

import asyncio
import errno

import pytest

from harness.net import descriptors


def test_only_exhaustion_is_counted_and_the_first_one_is_named() -> None:
    before = descriptors.snapshot()["exhausted"]
    assert not descriptors.note(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connect")
    assert not descriptors.note(ValueError("not an OSError"), "connect")
    assert descriptors.snapshot()["exhausted"] == before
    assert descriptors.note(OSError(errno.EMFILE, "Too many open files"), "balancer: connect to node-1")
    assert descriptors.note(OSError(errno.ENFILE, "Too many open files in system"), "accept")
    snap = descriptors.snapshot()
    assert snap["exhausted"] == before + 2
    assert snap["limit"] > 0 and snap["open"] > 0
    if before == 0:
        assert snap["error"] == "balancer: connect to node-1: Too many open files"


def test_the_loop_handler_counts_a_failed_accept_and_still_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        before = descriptors.snapshot()["exhausted"]
        exc = OSError(errno.EMFILE, "Too many open files")
        descriptors.exception_handler(loop, {"message": "socket.accept() out of system resource", "exception": exc})
        descriptors.exception_handler(loop, {"message": "something else", "exception": RuntimeError("x")})
        assert descriptors.snapshot()["exhausted"] == before + 1
        messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
        assert any("out of system resource" in m for m in messages) and any("something else" in m for m in messages)
    finally:
        loop.close()
