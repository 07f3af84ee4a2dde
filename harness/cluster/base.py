"""The interface every cluster backend implements.

A backend turns a topology into running pieces and gives the harness four things: an entry URL for clients,
the pods that exist (so checks know which pods could have served), a way to scale a component while clients
run, and a way to take everything down again, also when bringing it up failed halfway.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from harness import interrupts
from harness.errors import UsageError
from harness.topology import Topology

__all__ = ["Cluster", "Component", "Pod", "ProcessExit"]

Component = Literal["app", "tier"]


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    component: Component
    node: str
    address: str
    port: int
    ready: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.component,
            "node": self.node,
            "address": self.address,
            "port": self.port,
            "ready": self.ready,
        }


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """A process of the cluster that exited without being asked to."""

    name: str  # the pod's name, or the piece's ("netd")
    component: str  # "app" | "tier": a pod (the system under test); "harness": the harness's own machinery
    status: int | None  # exit status; negative: the signal that killed it
    at: float  # wall-clock seconds when it was seen gone


class Cluster(ABC):
    """A topology brought up on some backend. Use as a context manager: ``with backend(...) as cluster:``."""

    topology: Topology
    run_id: str

    @abstractmethod
    def up(self) -> None:
        """Create every piece and return once a handshake through the entry point answers.

        On failure, whatever was made is taken down before the error propagates."""

    @abstractmethod
    def down(self) -> None:
        """Stop and remove everything this cluster started. Safe to call twice, and after a failed ``up``."""

    @property
    @abstractmethod
    def entry_url(self) -> str:
        """Where clients connect: the load balancer's URL (``http://host:port``)."""

    @abstractmethod
    def pods(self, component: Component = "app") -> list[Pod]:
        """The pods of a component that exist now, in creation order."""

    @abstractmethod
    def scale(self, component: Component, replicas: int) -> None:
        """Change a component's replica count and return once the change is in effect: new pods ready and in the
        endpoints, removed pods out of the endpoints first and then stopped, as Kubernetes does."""

    @abstractmethod
    def kill(self, component: Component) -> str:
        """Kill one pod of a component without warning, as a crash would (its replacement is started, as a
        ReplicaSet would); returns the killed pod's name."""

    @abstractmethod
    def restart(self, component: Component) -> None:
        """A rolling restart: each pod replaced by a new one, a new pod ready before an old one goes."""

    @abstractmethod
    def set_node_in_balancer(self, node: str, enabled: bool) -> None:
        """Take a node out of the load balancer's rotation, or put it back."""

    def add_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        """Set a fault in the load balancer's data path (`harness.net.faults.Fault.from_json`'s form); returns it
        as set. Backends whose balancer is not the harness's refuse, naming why."""
        raise UsageError("this backend's load balancer is not the harness's: it cannot set balancer faults")

    def clear_faults(self, *, node: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Clear the balancer's faults (those of ``node`` and/or named ``name``; all by default); returns them."""
        raise UsageError("this backend's load balancer is not the harness's: it cannot clear balancer faults")

    def balancer_faults(self) -> list[dict[str, Any]] | None:
        """The faults the balancer holds now; None when it cannot tell."""
        return None

    def proxy_mismatch(self) -> str | None:
        """The balancer's PROXY header and what the tier expects disagree (one sentence naming which way), or
        None: they agree, or the backend cannot ask."""
        return None

    def unplanned_exits(self) -> list[ProcessExit]:
        """Processes that exited since the last call without being stopped on purpose. A pod among them is taken
        out of its endpoints, as a pod that fails its readiness is. Backends that cannot tell return []."""
        return []

    def harness_faults(self) -> list[str]:
        """Faults of the harness's own machinery that is still running (the local backend's network daemon out
        of file descriptors, or not answering): each means the run cannot be judged. Backends that cannot tell
        return []."""
        return []

    def pod_answers(self, pod: Pod) -> bool | None:
        """Whether ``pod`` answers an Engine.IO handshake sent straight to it; None when this backend cannot
        reach pods directly."""
        return None

    def node_in_balancer(self, node: str) -> bool | None:
        """Whether the load balancer has ``node`` in its rotation (not taken out); None when it cannot tell."""
        return None

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """What is running and how it is doing, JSON-serialisable (for ``harness status`` and evidence)."""

    def __enter__(self) -> Cluster:
        try:
            self.up()
        except BaseException:
            with interrupts.stopping(), contextlib.suppress(Exception):
                self.down()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()
