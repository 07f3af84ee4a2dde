"""The nginx proxy tier of the local backend: real nginx processes running the config that ships in clusters/.

Each tier pod is one nginx master with its own prefix directory, listening on its own pod address, and connecting
upstream from that address (``proxy_bind``), as a pod with one IP would. A config is checked with ``nginx -t``
before it is used; an endpoint change re-renders it and reloads nginx (SIGHUP), as a config reloader would.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path

import jinja2

from harness.cluster.local.processes import ManagedProcess, run_checked, spawn
from harness.errors import SetupError

__all__ = ["NginxPod", "nginx_binary", "render_template", "templates_dir"]


def templates_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "clusters" / "templates"


def render_template(template: str, **values: object) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template(template).render(**values)


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not found:
        raise SetupError(
            "nginx is not installed, and this topology has an nginx tier: install it with "
            "`apt-get install nginx-light` (or run `./scripts/setup`), then try again"
        )
    return found


class NginxPod:
    def __init__(
        self,
        *,
        name: str,
        node: str,
        address: str,
        port: int,
        template: str,
        proxy_protocol: bool,
        pod_dir: Path,
        run_id: str,
        attached: bool = True,
    ) -> None:
        self.name = name
        self.node = node
        self.address = address
        self.port = port
        self.template = template
        self.proxy_protocol = proxy_protocol
        self.dir = pod_dir
        self.run_id = run_id
        self.attached = attached
        self.process: ManagedProcess | None = None
        self.binary = nginx_binary()

    @property
    def conf_path(self) -> Path:
        return self.dir / "nginx.conf"

    def render(self, upstreams: Sequence[str]) -> str:
        return render_template(
            self.template,
            pod_name=self.name,
            listen_addr=self.address,
            listen_port=self.port,
            proxy_protocol=self.proxy_protocol,
            upstreams=list(upstreams),
            prefix=str(self.dir),
            pid_path=str(self.dir / "nginx.pid"),
            error_log=str(self.dir / "error.log"),
            proxy_bind=self.address,
        )

    def write_config(self, upstreams: Sequence[str]) -> None:
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        staged = self.dir / "nginx.conf.new"
        staged.write_text(self.render(upstreams), encoding="utf-8")
        run_checked(
            [self.binary, "-t", "-q", "-p", str(self.dir), "-c", str(staged)],
            doing=f"checking the nginx config of {self.name} ({staged})",
        )
        staged.replace(self.conf_path)

    def start(self, upstreams: Sequence[str]) -> ManagedProcess:
        self.write_config(upstreams)
        self.process = spawn(
            self.name,
            [self.binary, "-p", str(self.dir), "-c", str(self.conf_path)],
            run_id=self.run_id,
            log_path=self.dir / "stdout.log",
            attached=self.attached,
        )
        return self.process

    def reload(self, upstreams: Sequence[str]) -> None:
        self.write_config(upstreams)
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGHUP)

    def error_log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.dir / "error.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
