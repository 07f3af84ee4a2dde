"""The tier's config reloader: app pod addresses from the EndpointSlices into every running tier pod's config.

A tier with ``upstream: endpoints`` lists the app pods' addresses in its config (see ``manifests``). In production a
sidecar or controller rewrites that list when pods come and go; here the harness does it, so that scaling, pod
kills and rolling restarts reach the proxies as they would. It polls the app Service's EndpointSlices (a list call
every half second; what matters is the current set, and a poll cannot miss the last change as a broken watch can),
and when the ready set changes it re-renders the config, applies it to the ConfigMap (for tier pods yet to start)
and pushes it into each running tier pod through exec (check, swap, reload). A pod it has not yet pushed the
current config to, such as a tier pod started since, gets it on the next round. With no ready app pod at all the
last config stays: an empty upstream block is an error to nginx, and a reloader would not push it either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.cluster.kind.kube import KubeOps, pod_ready, ready_endpoints
from harness.cluster.kind.manifests import Endpoint, tier_files, tier_reload_argv
from harness.errors import HarnessError, SetupError

__all__ = ["TierReloader"]

log = logging.getLogger(__name__)

Key = tuple[tuple[str, str], ...]


def _key(endpoints: Sequence[Endpoint]) -> Key:
    return tuple(sorted((e.pod, e.ip) for e in endpoints))


class TierReloader:
    def __init__(
        self,
        kube: KubeOps,
        *,
        namespace: str,
        tier_kind: str,
        tier_selector: str,
        render: Callable[[Sequence[Endpoint]], dict[str, Any]],
        interval: float = 0.5,
    ) -> None:
        """``render``: the tier ConfigMap for a set of app endpoints."""
        self.kube = kube
        self.namespace = namespace
        self.tier_kind = tier_kind
        self.tier_selector = tier_selector
        self.render = render
        self.interval = interval
        self.reloads = 0
        self.last_error: str | None = None
        self._config = ""
        self._version = 0
        self._rendered: Key | None = None
        self._pushed: dict[str, int] = {}
        self._synced: Key | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def adopt(self, endpoints: Sequence[Endpoint], config: str, pods: Sequence[str]) -> None:
        """What was applied before the reloader started: the tier pods already run ``config``."""
        self._rendered = self._synced = _key(endpoints)
        self._config = config
        self._pushed = dict.fromkeys(pods, 0)

    def sync_once(self) -> None:
        """One round: re-render if the ready app endpoints changed, push to every tier pod that lacks it."""
        endpoints = ready_endpoints(self.kube.endpoint_slices(self.namespace, "app"))
        if not endpoints:
            return
        key = _key(endpoints)
        if key != self._rendered:
            config_map = self.render(endpoints)
            self.kube.apply(config_map)
            self._config = config_map["data"][tier_files(self.tier_kind).config_key]
            self._version += 1
            self._rendered = key
            log.info("tier config version %d: %s", self._version, ", ".join(f"{p}={ip}" for p, ip in key))
        complete = True
        for pod in self.kube.pods(self.namespace, self.tier_selector):
            meta = pod.get("metadata") or {}
            name = str(meta.get("name", ""))
            running = (pod.get("status") or {}).get("phase") == "Running" and not meta.get("deletionTimestamp")
            if not running or self._pushed.get(name) == self._version:
                continue
            code, output = self.kube.exec(
                self.namespace, name, self.tier_kind, tier_reload_argv(self.tier_kind, self._config), 30.0
            )
            if code != 0:
                self.last_error = f"reloading {name} exited {code}: {output.strip()[-2000:]}"
                log.warning("%s", self.last_error)
                complete = complete and not pod_ready(pod)
                continue
            self._pushed[name] = self._version
            self.reloads += 1
        if complete:
            with self._changed:
                self._synced = key
                self._changed.notify_all()

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.sync_once()
                except HarnessError as exc:  # the API hiccuped: the next round tries again
                    self.last_error = str(exc)
                    log.warning("tier reloader: %s", exc)
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="sticky-tier-reloader", daemon=True)
        self._thread.start()

    def wait_synced(self, endpoints: Sequence[Endpoint], timeout: float = 60.0) -> None:
        """Return once every running tier pod has reloaded a config listing exactly ``endpoints``."""
        wanted = _key(endpoints)
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._synced != wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    detail = f" (last error: {self.last_error})" if self.last_error else ""
                    raise SetupError(
                        f"the tier pods did not reload a config with the app endpoints "
                        f"{', '.join(ip for _, ip in wanted)} within {timeout:g} s{detail}"
                    )
                self._changed.wait(min(left, 1.0))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

    def status(self) -> dict[str, Any]:
        return {"version": self._version, "reloads": self.reloads, "last_error": self.last_error}
