"""Wrong-pod answers of each server, as literal bodies (shapes taken from the servers' sources: Node engine.io 6
``abortRequest`` / ``abortUpgrade``, python-engineio ``_bad_request``, uvicorn's close-before-accept), and
answers that look alike but are not wrong-pod answers."""

from __future__ import annotations

import pytest

from harness.client.records import ExchangeKind
from harness.client.sticky import classify

POLL, POST, UPGRADE, HANDSHAKE, ACK = (
    ExchangeKind.POLL,
    ExchangeKind.POST,
    ExchangeKind.UPGRADE,
    ExchangeKind.HANDSHAKE,
    ExchangeKind.ACK,
)
SID = "n2ZPM3Bqm1VyCwhPAAAB"


@pytest.mark.parametrize(
    ("status", "body", "kind", "says"),
    [
        # Node engine.io: polling GET / POST for an unknown sid
        (400, b'{"code":1,"message":"Session ID unknown"}', POLL, "Session ID unknown"),
        (400, '{"code":1,"message":"Session ID unknown"}', POST, "Session ID unknown"),
        # Node engine.io: an upgrade for an unknown sid (uWebSockets.js server answers it in JSON too)
        (400, b"Session ID unknown", UPGRADE, "Session ID unknown"),
        (400, b'{"code":1,"message":"Session ID unknown"}', UPGRADE, "Session ID unknown"),
        # Node engine.io: code 3 on an upgrade whose sid this server cannot use
        (400, b'{"code":3,"message":"Bad request"}', UPGRADE, "code 3"),
        (400, b"Bad request", UPGRADE, "Bad request"),
        # python-engineio: its message as a JSON string, quotes included
        (400, f'"Invalid session {SID}"'.encode(), POLL, f"Invalid session {SID}"),
        (400, f'"Invalid session {SID}"'.encode(), POST, f"Invalid session {SID}"),
        (400, f'"Invalid session {SID}"'.encode(), UPGRADE, f"Invalid session {SID}"),  # under a WSGI server
        # the reference app's answer to a wrong-pod upgrade (plain text)
        (400, f"Invalid session {SID}".encode(), UPGRADE, f"Invalid session {SID}"),
        # uvicorn: python-engineio closes an upgrade it cannot serve before accepting it
        (403, b"", UPGRADE, "403"),
    ],
)
def test_wrong_pod_answers(status: int, body: bytes | str, kind: ExchangeKind, says: str) -> None:
    reason = classify(status, body, kind)
    assert reason is not None
    assert says in reason


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, b'0{"sid":"abc"}', POLL),
        (200, b"ok", POST),
        (101, b"", UPGRADE),
        (None, b"", POLL),  # no answer at all is an error, not a wrong-pod answer
        (400, b'"Invalid transport"', POLL),
        (400, b'"Unexpected HTTP request"', POLL),
        (400, b'{"code":0,"message":"Transport unknown"}', POLL),
        (400, b'{"code":3,"message":"Bad request"}', POLL),  # code 3 off an upgrade: a transport mismatch
        (400, b'"Bad Request"', POST),
        (400, b"<html><body>400 Bad Request</body></html>", POLL),
        (400, f'"Invalid session {SID}"'.encode(), HANDSHAKE),  # a handshake has no sid
        (403, b"", POLL),
        (403, b"Forbidden by policy", UPGRADE),
        (404, b"Not Found", UPGRADE),
        (502, b"<html>Bad Gateway</html>", POLL),
        (400, b'"Invalid session x"', ACK),
    ],
)
def test_other_answers(status: int | None, body: bytes, kind: ExchangeKind) -> None:
    assert classify(status, body, kind) is None
