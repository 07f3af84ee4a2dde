"""What the kind and kubeconfig backends share: executing the plan, the API-side steps, scaling, evidence.

A run on a real cluster is the ordered steps of ``plan.py``; ``KubeCluster`` executes them in a small loop that
dispatches on each step's ``action`` to a ``_do_<action>`` method, with commands through an injectable runner and
API calls through an injectable ``KubeOps``, so that the order and the clean-up can be tested without Docker or a
cluster. When ``up`` fails, evidence is collected into ``<run dir>/evidence/`` and then ``down`` deletes what the
run made, unless ``keep``; a clean-up that fails too is added to the original error, never hides it. Scaling,
pod kills and rolling restarts go through the API and return once the rollout is complete, the EndpointSlices
list exactly the ready pods and, for a tier that lists pod addresses, every tier pod runs a config with them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.cluster.base import Cluster, Component, Pod
from harness.cluster.kind import evidence
from harness.cluster.kind.kube import Kube, KubeOps, deployment_done, pod_ready, ready_endpoints
from harness.cluster.kind.manifests import (
    APP_PORT,
    RUN_LABEL,
    TIER_PORT,
    Endpoint,
    label_value,
    render_manifests,
    tier_files,
)
from harness.cluster.kind.plan import PlanOptions, Step, down_steps, evidence_steps, format_plan, up_steps
from harness.cluster.kind.preflight import CommandRunner, preflight, require
from harness.cluster.kind.reloader import TierReloader
from harness.cluster.local.backend import handshake
from harness.cluster.local.processes import run_checked, wait_until
from harness.errors import HarnessError, UsageError
from harness.topology import Topology

__all__ = ["Echo", "KubeCluster", "KubeFactory"]

log = logging.getLogger(__name__)

KubeFactory = Callable[[Path | None, str | None], KubeOps]
Echo = Callable[[str], None]


class KubeCluster(Cluster):
    """What both backends share: the step loop, the API-side steps, scaling, evidence."""

    backend = "kubeconfig"

    def __init__(
        self,
        topology: Topology,
        opts: PlanOptions,
        *,
        seed: int = 0,
        dry_run: bool = False,
        runner: CommandRunner = run_checked,
        kube_factory: KubeFactory = Kube,
        pull_policy: str = "IfNotPresent",
        echo: Echo = print,
    ) -> None:
        self.topology = topology
        self.opts = opts
        self.run_id = opts.run_id
        self.run_dir = opts.run_dir
        self.seed = seed
        self.dry_run = dry_run
        self.runner = runner
        self.kube_factory = kube_factory
        self.pull_policy = pull_policy
        self.echo = echo
        self.namespace = opts.namespace
        self.removed_pods: list[str] = []
        self.reloader: TierReloader | None = None
        self._kube: KubeOps | None = None
        self._applied = False  # the namespace exists: there is something to collect and delete
        self._app_endpoints: list[Endpoint] | None = None  # what the tier config lists (upstream: endpoints)
        self._down = False
        self._rng = random.Random(f"{seed}/kill")

    # -- the plan and its execution -------------------------------------------------------------------------------

    def up_plan(self) -> list[Step]:
        return up_steps(self.topology, self.opts)

    def evidence_plan(self) -> list[Step]:
        return evidence_steps(self.topology, self.opts)

    def down_plan(self) -> list[Step]:
        return down_steps(self.topology, self.opts)

    def up(self) -> None:
        if self.dry_run:
            self.echo(format_plan(self.up_plan() + self.evidence_plan() + self.down_plan()))
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for step in self.up_plan():
                self.execute(step)
        except BaseException as exc:
            self._clean_up_after(exc)
            raise

    def _clean_up_after(self, exc: BaseException) -> None:
        """Evidence first (the cluster may be about to go), then down; neither may hide ``exc``."""
        if self._applied:
            try:
                where = self.collect_evidence(f"up failed: {exc}")
                exc.add_note(f"evidence of the failure: {where}")
            except Exception as failure:
                exc.add_note(f"collecting evidence failed too: {failure}")
        try:
            self.down()
        except Exception as failure:
            exc.add_note(f"and cleaning up failed: {failure}")

    def down(self) -> None:
        if self._down or self.dry_run:
            return
        self._down = True
        failures = []
        for step in self.down_plan():
            try:
                self.execute(step)
            except Exception as exc:  # go on: every later step still has something to remove
                log.warning("%s failed: %s", step.description, exc)
                failures.append(f"{step.description}: {exc}")
        if failures:
            raise HarnessError("taking the run down left something behind:\n  " + "\n  ".join(failures))

    def execute(self, step: Step) -> None:
        handler = getattr(self, f"_do_{step.action}", None)
        if handler is None:
            raise HarnessError(f"the {self.backend} backend has no way to do {step.action!r} ({step.description})")
        log.info("%s", step)
        handler(step)

    def collect_evidence(self, reason: str) -> Path:
        """Save pod logs, events, descriptions (and on kind each node's proxy rules) into ``evidence/``."""
        out = self.run_dir / "evidence"
        out.mkdir(parents=True, exist_ok=True)
        (out / "reason.txt").write_text(reason + "\n", encoding="utf-8")
        for step in self.evidence_plan():
            try:
                self.execute(step)
            except Exception as exc:  # evidence is best effort; the failure that brought us here matters more
                log.warning("evidence: %s failed: %s", step.description, exc)
        return out

    @property
    def kube(self) -> KubeOps:
        if self._kube is None:
            self._kube = self.kube_factory(self.opts.kubeconfig, self.opts.context)
        return self._kube

    # -- steps that both backends take ----------------------------------------------------------------------------

    def _do_preflight(self, _step: Step) -> None:
        findings = preflight(run=self.runner, backend=self.backend)
        for finding in findings:
            log.info("preflight %s", finding.line())
        require(findings)

    def _do_run(self, step: Step) -> None:
        assert step.argv is not None
        self.runner(step.argv, doing=step.description, timeout=step.timeout)

    def _do_check_api(self, step: Step) -> None:
        log.info("Kubernetes %s", self.kube.version())

    def _manifests(self) -> list[dict[str, Any]]:
        return render_manifests(
            self.topology,
            run_id=self.run_id,
            app_endpoints=self._app_endpoints,
            image=self.opts.image,
            pull_policy=self.pull_policy,
            node_port=self._fixed_node_port(),
        )

    def _fixed_node_port(self) -> int | None:
        return None

    def _do_apply(self, step: Step) -> None:
        assert step.api is not None
        kind, name = step.args["kind"], step.api.name
        obj = next(o for o in self._manifests() if o["kind"] == kind and o["metadata"]["name"] == name)
        self.kube.apply(obj)
        self._applied = True

    def _do_read_endpoints(self, _step: Step) -> None:
        self._app_endpoints = ready_endpoints(self.kube.endpoint_slices(self.namespace, "app")) or None
        if self._app_endpoints is None:
            raise HarnessError(
                f"the app Service in {self.namespace} has no ready endpoint to write into the tier config"
            )

    def _selector(self, component: str) -> str:
        return f"app.kubernetes.io/component={component},{RUN_LABEL}={label_value(self.run_id)}"

    def _wait_rollout(self, component: str, replicas: int, timeout: float) -> None:
        wait_until(
            lambda: deployment_done(self.kube.deployment(self.namespace, component), replicas),
            timeout=timeout,
            what=f"{replicas} ready {component} pods in {self.namespace} (the rollout complete)",
            interval=1.0,
            on_fail=lambda: self._pod_summary(component),
        )

    def _wait_endpoints(
        self, component: str, timeout: float = 120.0, *, replicas: int | None = None, gone: Collection[str] = ()
    ) -> list[Endpoint]:
        """Until the Service's ready endpoints are exactly the ready pods of the component: ``replicas`` of them
        if given, and none of the pods in ``gone`` still there (a killed pod, the old pods of a restart)."""
        found: list[Endpoint] = []

        def matches() -> bool:
            nonlocal found
            pods = self.kube.pods(self.namespace, self._selector(component))
            ready = {p["metadata"]["name"] for p in pods if pod_ready(p)}
            found = ready_endpoints(self.kube.endpoint_slices(self.namespace, component))
            return (
                bool(ready)
                and {e.pod for e in found} == ready
                and (replicas is None or len(ready) == replicas)
                and not {p["metadata"]["name"] for p in pods} & set(gone)
            )

        wait_until(
            matches,
            timeout=timeout,
            what=f"the {component} Service's EndpointSlices listing exactly its ready pods",
            interval=0.5,
            on_fail=lambda: f"endpoints: {[e.pod for e in found]}\n{self._pod_summary(component)}",
        )
        return found

    def _do_wait_rollout(self, step: Step) -> None:
        self._wait_rollout(step.args["component"], step.args["replicas"], step.timeout)

    def _do_wait_endpoints(self, step: Step) -> None:
        self._wait_endpoints(step.args["component"], step.timeout)

    def _pod_summary(self, component: str) -> str:
        try:
            pods = self.kube.pods(self.namespace, self._selector(component))
        except HarnessError as exc:
            return f"(could not list the pods: {exc})"
        lines = []
        for pod in pods:
            status = pod.get("status") or {}
            states = []
            for container in status.get("containerStatuses") or []:
                state: dict[str, Any] = container.get("state") or {}  # {"waiting": {"reason": ...}} and the like
                reasons = [str((v or {}).get("reason", k)) for k, v in state.items()]
                states.append(f"{container.get('name')}={'/'.join(reasons)}")
            lines.append(f"{pod['metadata']['name']}: {status.get('phase')} ready={pod_ready(pod)} {' '.join(states)}")
            if not pod_ready(pod):
                lines += self._why_not_ready(pod)
        return "\n".join(lines) or "(no pods)"

    def _why_not_ready(self, pod: dict[str, Any], events: int = 5, log_lines: int = 10) -> list[str]:
        """A pod that is not ready names its own trouble: its last events and the last lines of its logs."""
        name = pod["metadata"]["name"]
        out = []
        try:
            mine = [e for e in self.kube.events(self.namespace) if (e.get("involvedObject") or {}).get("name") == name]
        except HarnessError as exc:
            mine, out = [], [f"  (could not read the events: {exc})"]
        for event in mine[-events:]:
            out.append(f"  event {event.get('type')} {event.get('reason')}: {event.get('message')}")
        for container in (pod.get("spec") or {}).get("containers") or []:
            try:
                text = self.kube.pod_log(self.namespace, name, container["name"], False)
            except HarnessError as exc:
                out.append(f"  (no log of {container['name']}: {exc})")
                continue
            tail = text.splitlines()[-log_lines:]
            out += [f"  log {container['name']}: {line}" for line in tail] or [f"  log {container['name']}: (empty)"]
        return out

    def _do_start_reloader(self, _step: Step) -> None:
        tier = self.topology.proxy_tier
        assert tier is not None, "only an nginx or HAProxy tier lists the app endpoints in its config"
        kind = tier.kind

        def render(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
            objects = render_manifests(self.topology, run_id=self.run_id, app_endpoints=endpoints)
            return next(o for o in objects if o["kind"] == "ConfigMap")

        # An API client of its own: ``kubernetes.stream.stream`` swaps the client's request method while an exec
        # runs, which would break the main thread's calls (scaling, waiting on EndpointSlices) made meanwhile.
        own = self.kube_factory(self.opts.kubeconfig, self.opts.context)
        reloader = TierReloader(
            own, namespace=self.namespace, tier_kind=kind, tier_selector=self._selector("tier"), render=render
        )
        applied = self._app_endpoints or []  # what the ConfigMap the tier pods started from lists
        reloader.adopt(
            applied, render(applied)["data"][tier_files(kind).config_key], [p.name for p in self.pods("tier")]
        )
        reloader.start()
        self.reloader = reloader

    def _do_stop_reloader(self, _step: Step) -> None:
        if self.reloader is not None:
            self.reloader.stop()
            self.reloader = None

    def _do_handshake_entry(self, step: Step) -> None:
        wait_until(
            lambda: handshake(self.entry_url, timeout=2.0) is not None,
            timeout=step.timeout,
            what=f"a handshake through the entry point {self.entry_url}",
            interval=1.0,
        )

    def _do_delete_namespace(self, step: Step) -> None:
        if self._applied:
            self.kube.delete_namespace(self.namespace)

    def _do_delete_object(self, step: Step) -> None:
        if self._applied:
            self.kube.delete(step.args["api_version"], step.args["kind"], step.args["name"])

    def _do_evidence_logs(self, _step: Step) -> None:
        evidence.collect_logs(self.kube, self.namespace, self.run_dir / "evidence")

    def _do_evidence_events(self, _step: Step) -> None:
        evidence.collect_events(self.kube, self.namespace, self.run_dir / "evidence")

    def _do_capture(self, step: Step) -> None:
        assert step.argv is not None and step.output is not None
        out = self.run_dir / "evidence" / step.output
        evidence.capture(self.runner, step.argv, out, doing=step.description, timeout=step.timeout)

    # -- the interface ----------------------------------------------------------------------------------------------

    def _node_name(self, node: str) -> str:
        return node

    def pods(self, component: Component = "app") -> list[Pod]:
        if component == "tier" and self.topology.tier is None:
            return []
        raw = self.kube.pods(self.namespace, self._selector(component))
        raw = [p for p in raw if not (p.get("metadata") or {}).get("deletionTimestamp")]
        raw.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        return [
            Pod(
                name=p["metadata"]["name"],
                component=component,
                node=self._node_name(str((p.get("spec") or {}).get("nodeName", ""))),
                address=str((p.get("status") or {}).get("podIP", "")),
                port=APP_PORT if component == "app" else TIER_PORT,
                ready=pod_ready(p),
            )
            for p in raw
        ]

    def _settle(
        self, component: Component, replicas: int, before: set[str], gone: Collection[str] = (), timeout: float = 300.0
    ) -> None:
        """After a change: the rollout done, the endpoints updated, the tier reloaded; note the pods gone."""
        self._wait_rollout(component, replicas, timeout)
        endpoints = self._wait_endpoints(component, timeout, replicas=replicas, gone=gone)
        if component == "app" and self.reloader is not None:
            self.reloader.wait_synced(endpoints)
        after = {p.name for p in self.pods(component)}
        self.removed_pods += sorted(before - after)

    def scale(self, component: Component, replicas: int) -> None:
        if replicas < 1:
            raise UsageError(f"cannot scale {component} to {replicas}: at least 1 replica")
        if component == "tier" and self.topology.tier is None:
            raise UsageError(f"topology {self.topology.name} has no tier to scale")
        before = {p.name for p in self.pods(component)}
        self.kube.scale(self.namespace, component, replicas)
        self._settle(component, replicas, before)

    def kill(self, component: Component) -> str:
        pods = self.pods(component)
        if not pods:
            raise UsageError(f"no {component} pod to kill")
        victim = self._rng.choice(pods).name
        self.kube.delete_pod(self.namespace, victim, 0)  # no grace: a crash, not a drain
        self._settle(component, len(pods), {p.name for p in pods}, gone=[victim])
        return victim

    def restart(self, component: Component) -> None:
        pods = self.pods(component)
        self.kube.restart(self.namespace, component, datetime.now(UTC).isoformat())
        old = {p.name for p in pods}
        self._settle(component, len(pods), old, gone=old, timeout=600.0)

    def status(self) -> dict[str, Any]:
        pods: list[dict[str, Any]] = []
        components: tuple[Component, ...] = ("app", "tier")
        try:
            pods = [p.to_json() for c in components for p in self.pods(c)]
        except HarnessError as exc:
            log.info("status: %s", exc)
        return {
            "run_id": self.run_id,
            "backend": self.backend,
            "topology": self.topology.name,
            "namespace": self.namespace,
            "pods": pods,
            "removed_pods": list(self.removed_pods),
            "tier_reloader": self.reloader.status() if self.reloader else None,
        }
