"""``python -m harness.app``: one app pod, configured from the environment as a Kubernetes pod would be.

HOST (default 127.0.0.1), PORT (default 8000), POD_NAME (default the host name), PING_INTERVAL and PING_TIMEOUT
(seconds, defaults 25 and 20), SIO_COOKIE (name of the sid cookie set on the handshake, e.g. ``io``; off unless set).
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Mapping

from harness.app.server import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, build_app, serve

__all__ = ["main"]


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"harness.app: {name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise SystemExit(f"harness.app: {name}={raw!r} must be positive")
    return value


def main(env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    host = env.get("HOST") or "127.0.0.1"
    raw_port = env.get("PORT") or "8000"
    try:
        port = int(raw_port)
    except ValueError:
        raise SystemExit(f"harness.app: PORT={raw_port!r} is not a port number") from None
    pod_name = env.get("POD_NAME") or socket.gethostname()
    ping_interval = _number(env, "PING_INTERVAL", DEFAULT_PING_INTERVAL)
    ping_timeout = _number(env, "PING_TIMEOUT", DEFAULT_PING_TIMEOUT)
    cookie = env.get("SIO_COOKIE") or None

    # uvicorn deprecates its legacy `websockets` implementation; it is still the one every supported uvicorn has.
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {pod_name} %(levelname)s %(name)s: %(message)s")
    app = build_app(pod_name, ping_interval=ping_interval, ping_timeout=ping_timeout, cookie=cookie)
    print(f"{pod_name} listening on {host}:{port}", flush=True)
    serve(app, host, port)


if __name__ == "__main__":
    main()
