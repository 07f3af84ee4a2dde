"""Recognise the answers a server gives to a request of a session it does not know: a wrong-pod answer.

Without an ``x-pod`` header (a user's own app) these answers are the only evidence that a request left its
session's pod, and their shapes differ by server:

- Node's engine.io, polling GET / POST: 400 ``application/json`` ``{"code":1,"message":"Session ID unknown"}``;
  a WebSocket upgrade with an unknown sid: 400 with the plain-text body ``Session ID unknown`` (engine.io 6
  ``abortUpgrade``); ``{"code":3,"message":"Bad request"}`` or plain ``Bad request`` on an upgrade when the
  sid is not usable there.
- python-engineio: 400 ``text/plain`` with the JSON string ``"Invalid session <sid>"`` (quotes included) for a
  GET or POST; under uvicorn, a WebSocket upgrade for an unknown sid becomes a bare 403 with no body.
- the harness's reference app: the same 400s, and a wrong-pod upgrade answered 400 ``Invalid session <sid>``.

A handshake carries no sid, so it is never a wrong-pod answer.
"""

from __future__ import annotations

import json
from typing import Any

from harness.client.records import ExchangeKind

__all__ = ["classify"]

_WITH_SID = (ExchangeKind.POLL, ExchangeKind.POST, ExchangeKind.UPGRADE)
_SHOWN = 120  # characters of a body quoted in a reason


def _text(body: bytes | str) -> str:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return text.strip()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def classify(status: int | None, body: bytes | str, kind: ExchangeKind) -> str | None:
    """Why this response is a wrong-pod answer (a server that does not know the session), or None if it is not."""
    if status is None or kind not in _WITH_SID:
        return None
    text = _text(body)
    decoded = _json(text)
    if status == 400:
        if isinstance(decoded, dict):
            code = decoded.get("code")
            message = str(decoded.get("message", ""))
            if code == 1 or message.lower() == "session id unknown":
                return f"engine.io: Session ID unknown (code {code})"
            if code == 3 and kind is ExchangeKind.UPGRADE:
                return f"engine.io: {message or 'Bad request'} (code 3) on an upgrade"
            return None
        plain = decoded if isinstance(decoded, str) else text  # python-engineio sends its message as a JSON string
        lowered = plain.lower()
        if lowered.startswith("invalid session"):
            return f"python-engineio: {plain[:_SHOWN]}"
        if lowered == "session id unknown":
            return "engine.io: Session ID unknown"
        if lowered == "bad request" and kind is ExchangeKind.UPGRADE:
            return "engine.io: Bad request on an upgrade"
        return None
    if status == 403 and kind is ExchangeKind.UPGRADE and not text:
        return "403 with no body on an upgrade (uvicorn's answer when python-engineio does not know the sid)"
    return None
