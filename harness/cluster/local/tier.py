"""The proxy tier of the local backend: real nginx or HAProxy processes running the config that ships in clusters/.

Each tier pod is one proxy process with its own directory, listening on its own pod address and connecting
upstream from that address (``proxy_bind`` / ``source``), as a pod with one IP would. A config is checked by the
proxy itself (``nginx -t``, ``haproxy -c``) before it is used; an endpoint change re-renders it and reloads the
running proxy (nginx: SIGHUP; HAProxy in master-worker mode: SIGUSR2), as a config reloader in a pod would.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from harness.cluster.local.processes import ManagedProcess, run_checked, spawn
from harness.errors import SetupError, UsageError

__all__ = ["PROXIES", "ProxyKind", "TierPod", "find_binary", "render_template", "templates_dir"]


def templates_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "clusters" / "templates"


def render_template(template: str, **values: object) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    try:
        return env.get_template(template).render(**values)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or templates_dir() / template} line {exc.lineno}"
        raise UsageError(
            f"template {where} does not render: {exc.message} (fix the template the topology's tier names)"
        ) from None
    except jinja2.TemplateError as exc:
        names = ", ".join(sorted(values))
        raise UsageError(
            f"template {templates_dir() / template} does not render: {exc.message or exc} "
            f"(a template has these values: {names})"
        ) from None


@dataclass(frozen=True)
class ProxyKind:
    """How to run one kind of proxy: its binary, its config file, how to check, run and reload it."""

    name: str
    package: str
    config_name: str
    reload_signal: signal.Signals

    def check_argv(self, binary: str, pod_dir: Path, config: Path) -> list[str]:
        if self.name == "nginx":
            return [binary, "-t", "-q", "-p", str(pod_dir), "-c", str(config)]
        return [binary, "-c", "-q", "-f", str(config)]

    def run_argv(self, binary: str, pod_dir: Path, config: Path) -> list[str]:
        if self.name == "nginx":
            return [binary, "-p", str(pod_dir), "-c", str(config)]  # the config says `daemon off`
        return [binary, "-W", "-db", "-f", str(config)]  # master-worker in the foreground: SIGUSR2 reloads


PROXIES = {
    "nginx": ProxyKind("nginx", "nginx-light", "nginx.conf", signal.SIGHUP),
    "haproxy": ProxyKind("haproxy", "haproxy", "haproxy.cfg", signal.SIGUSR2),
}


def find_binary(kind: ProxyKind) -> str:
    found = shutil.which(kind.name) or (f"/usr/sbin/{kind.name}" if os.path.exists(f"/usr/sbin/{kind.name}") else None)
    if not found:
        raise SetupError(
            f"{kind.name} is not installed, and this topology has a {kind.name} tier: install it with "
            f"`apt-get install {kind.package}` (or run `./scripts/setup`), then try again"
        )
    return found


class TierPod:
    def __init__(
        self,
        *,
        kind: str,
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
        self.kind = PROXIES[kind]
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
        self.binary = find_binary(self.kind)

    @property
    def conf_path(self) -> Path:
        return self.dir / self.kind.config_name

    def render(self, servers: Sequence[tuple[str, str]]) -> str:
        """The config for upstream ``servers``, each (name, "host:port")."""
        return render_template(
            self.template,
            pod_name=self.name,
            listen_addr=self.address,
            listen_port=self.port,
            proxy_protocol=self.proxy_protocol,
            upstreams=[address for _, address in servers],
            servers=[{"name": name, "address": address} for name, address in servers],
            prefix=str(self.dir),
            pid_path=str(self.dir / f"{self.kind.name}.pid"),
            error_log=str(self.dir / "error.log"),
            proxy_bind=self.address,
        )

    def write_config(self, servers: Sequence[tuple[str, str]]) -> None:
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        staged = self.dir / f"{self.kind.config_name}.new"
        staged.write_text(self.render(servers), encoding="utf-8")
        run_checked(
            self.kind.check_argv(self.binary, self.dir, staged),
            doing=f"checking the {self.kind.name} config of {self.name} ({staged})",
        )
        staged.replace(self.conf_path)

    def start(self, servers: Sequence[tuple[str, str]]) -> ManagedProcess:
        self.write_config(servers)
        self.process = spawn(
            self.name,
            self.kind.run_argv(self.binary, self.dir, self.conf_path),
            run_id=self.run_id,
            log_path=self.dir / "stdout.log",
            attached=self.attached,
        )
        return self.process

    def reload(self, servers: Sequence[tuple[str, str]]) -> None:
        self.write_config(servers)
        if self.process is not None:
            os.kill(self.process.pid, self.kind.reload_signal)

    def log_tail(self, lines: int = 15) -> str:
        parts = []
        for path in (self.dir / "error.log", self.dir / "stdout.log"):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            parts += text.splitlines()[-lines:]
        return "\n".join(parts)
