"""Plain python-socketio clients under Locust: the yardstick of benchmarks/swarm_capacity.py ``exchanges``.

Each user runs sessions one after another as the harness's clients do (connect, ``--calls`` acknowledged
``whoami`` calls 0.2 s apart, an ``echo``, disconnect, 0.05-0.3 s of thinking), with nothing recorded but counts:
HTTP responses (a response hook on the client's ``requests.Session``), WebSocket handshakes and acks. At the end
the process writes its exchanges, its CPU-seconds (``time.process_time`` from test start to test stop) and the
seconds between them to ``--result``.

    locust -f benchmarks/plain_socketio.py --headless -u 200 -r 100 -t 30s --host http://127.0.0.1:PORT \
        --calls 20 --mode upgrade --result plain.json
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
import socketio
from locust import User, between, events, task

TRANSPORTS = {"polling": ["polling"], "upgrade": ["polling", "websocket"], "websocket": ["websocket"]}
CALL_INTERVAL = 0.2  # as the harness's short sessions
COUNTS = {"exchanges": 0, "sessions": 0, "errors": 0}
WINDOW: dict[str, float] = {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--mode", choices=sorted(TRANSPORTS), default="upgrade")
    parser.add_argument("--result", default="plain-socketio.json")


@events.test_start.add_listener
def _start(**_: Any) -> None:
    WINDOW["cpu"], WINDOW["wall"] = time.process_time(), time.monotonic()


@events.test_stopping.add_listener
def _stopping(environment: Any, **_: Any) -> None:
    cpu, wall = time.process_time() - WINDOW["cpu"], time.monotonic() - WINDOW["wall"]
    result = {**COUNTS, "cpu_s": cpu, "seconds": wall}
    with open(environment.parsed_options.result, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


def _count(response: requests.Response, *_: Any, **__: Any) -> None:
    COUNTS["exchanges"] += 1


class PlainClient(User):
    wait_time = between(0.05, 0.3)  # the harness's think time between sessions

    @task
    def session(self) -> None:
        options = self.environment.parsed_options
        http = requests.Session()
        http.hooks["response"].append(_count)
        sio = socketio.Client(reconnection=False, handle_sigint=False, http_session=http, request_timeout=10)
        try:
            sio.connect(self.host, transports=TRANSPORTS[options.mode], wait_timeout=10, retry=False)
            if options.mode == "websocket":
                COUNTS["exchanges"] += 1  # the WebSocket handshake (not seen by the hook)
            elif sio.transport() == "websocket":
                COUNTS["exchanges"] += 1  # the upgrade
            for n in range(options.calls):
                if n:
                    time.sleep(CALL_INTERVAL)
                sio.call("whoami", timeout=10)
                COUNTS["exchanges"] += 1
            sio.call("echo", "x", timeout=10)
            COUNTS["exchanges"] += 1
            COUNTS["sessions"] += 1
        except Exception:
            COUNTS["errors"] += 1
        finally:
            sio.disconnect()
            http.close()
