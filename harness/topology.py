"""Topologies are data: one YAML file per topology in ``clusters/topologies/``, rendered alike by every backend.

A topology names the pieces between a client and the app pods (load balancer, nodes, an optional proxy tier and
the Services in between) and the verdict it is expected to earn. Loading validates every field strictly, and an
error names the file, the field and what is allowed, so that a person writing a topology can fix it at once.

The tier is one of two things. ``nginx`` / ``haproxy``: proxy pods configured from a template in
``clusters/templates``, which the local backend runs as real processes and the kind backend ships in a ConfigMap.
``ingress-nginx``: the ingress-nginx controller, configured through its ConfigMap and the annotations of an
Ingress; it is a Kubernetes controller, not a process the local backend can start, so such topologies are for the
kind and kubeconfig backends only (``Topology.kind_only``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from harness.errors import TopologyError

__all__ = [
    "IngressNginx",
    "LoadBalancer",
    "ServiceSpec",
    "Tier",
    "Topology",
    "available_topologies",
    "load_topology",
    "parse_duration",
    "topologies_dir",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"1.5m"``, ``"250ms"``, ``"2h"``."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 60s, 5m or 250ms")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as 60s, 5m or 250ms")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Affinity(StrEnum):
    NONE = "None"
    CLIENT_IP = "ClientIP"


class TrafficPolicy(StrEnum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSpec(_Model):
    """A Kubernetes Service in front of a set of pods, as kube-proxy implements it."""

    session_affinity: Affinity = Affinity.NONE
    timeout_seconds: int = Field(10800, ge=1, le=86400)  # kube-proxy's ClientIP timeout and its range
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER


class HealthCheck(_Model):
    """TCP health checks of each node, as cloud load balancers do them."""

    interval: Duration = 10.0
    timeout: Duration = 5.0
    unhealthy_threshold: int = Field(2, ge=1, le=10)
    healthy_threshold: int = Field(2, ge=1, le=10)


class LoadBalancer(_Model):
    """The cloud load balancer in front of every node's NodePort."""

    # elb: round robin per connection (Classic ELB TCP listener); nlb: flow hash per connection, optional
    # source-IP stickiness (NLB target groups); tcp: a plain TCP balancer, round robin, no header by default.
    mode: Literal["elb", "nlb", "tcp"] = "elb"
    proxy_protocol: Literal["v1", "v2", "none"] = "v1"
    idle_timeout: Duration = 60.0
    source_ip_stickiness: bool = False  # nlb only: every connection of a source address goes to one node
    draining_timeout: Duration = 300.0  # how long a node taken out keeps its open connections
    health_check: HealthCheck | None = None

    @model_validator(mode="after")
    def _stickiness_needs_nlb(self) -> LoadBalancer:
        if self.source_ip_stickiness and self.mode != "nlb":
            raise ValueError("source_ip_stickiness needs mode: nlb (Classic ELB TCP listeners have no stickiness)")
        return self


class Tier(_Model):
    """A proxy tier (nginx or HAProxy pods) between the NodePort and the app."""

    kind: Literal["nginx", "haproxy"]
    replicas: int = Field(2, ge=1, le=50)
    template: str  # path below clusters/templates/
    upstream: Literal["service", "endpoints"]  # through the app's ClusterIP Service, or to pod addresses
    service: ServiceSpec = ServiceSpec()
    # whether the tier reads a PROXY header: as the balancer sends (the working setup), or regardless of it
    # ("expect", "none"): a mismatch the harness names (its finding), as users' own configs can have
    proxy_protocol: Literal["as_balancer", "expect", "none"] = "as_balancer"

    def reads_proxy_protocol(self, balancer_sends: str) -> bool:
        if self.proxy_protocol == "as_balancer":
            return balancer_sends != "none"
        return self.proxy_protocol == "expect"


# What ingress-nginx's annotation validation accepts for upstream-hash-by (its parser.NGINXVariable), and a variable.
_HASH_CHARS = re.compile(r"^[A-Za-z0-9_${}-]+$")
_HASH_VARIABLE = re.compile(r"\$\{?[A-Za-z_]")
_COOKIE_ONLY = ("affinity_mode", "cookie_name", "cookie_max_age")


class IngressNginx(_Model):
    """The ingress-nginx controller as the tier: its pods behind the NodePort read the PROXY header (ConfigMap
    ``use-proxy-protocol``) and balance over the app pods themselves, as the Ingress's annotations say.

    ``affinity``: ``cookie`` (``nginx.ingress.kubernetes.io/affinity: cookie``, with ``affinity_mode`` balanced,
    ingress-nginx's default, or persistent, ``cookie_name`` and ``cookie_max_age``), ``hash``
    (``upstream-hash-by``: ``hash_by``, an nginx variable such as ``$remote_addr``) or ``none`` (round robin)."""

    kind: Literal["ingress-nginx"]
    replicas: int = Field(2, ge=1, le=50)
    affinity: Literal["cookie", "hash", "none"]
    affinity_mode: Literal["balanced", "persistent"] | None = None  # cookie only; None: balanced, the default
    cookie_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")  # cookie only; None: INGRESSCOOKIE
    cookie_max_age: Duration | None = None  # cookie only; None: a session cookie (kept until the client quits)
    hash_by: str | None = None  # hash only
    service: ServiceSpec = ServiceSpec()

    @model_validator(mode="after")
    def _combination(self) -> IngressNginx:
        misplaced = [name for name in _COOKIE_ONLY if getattr(self, name) is not None]
        if self.affinity != "cookie" and misplaced:
            raise ValueError(
                f"{' and '.join(misplaced)} {'applies' if len(misplaced) == 1 else 'apply'} only with affinity: cookie "
                f"(ingress-nginx reads affinity-mode and the session-cookie annotations only for cookie affinity), "
                f"not with affinity: {self.affinity}"
            )
        if self.affinity == "hash" and self.hash_by is None:
            raise ValueError("affinity: hash needs hash_by, the nginx variable to hash on, such as $remote_addr")
        if self.affinity != "hash" and self.hash_by is not None:
            raise ValueError(f"hash_by only applies with affinity: hash, not with affinity: {self.affinity}")
        if self.hash_by is not None and not (_HASH_CHARS.match(self.hash_by) and _HASH_VARIABLE.search(self.hash_by)):
            raise ValueError(
                f"hash_by {self.hash_by!r}: give an nginx variable such as $remote_addr (letters, digits, _, -, $, "
                "{ and } only: what ingress-nginx accepts for upstream-hash-by)"
            )
        if self.cookie_max_age is not None and self.cookie_max_age < 1:
            raise ValueError("cookie_max_age: at least 1s (session-cookie-max-age is a whole number of seconds)")
        return self

    @property
    def mode(self) -> str:
        """The cookie affinity mode ingress-nginx applies: balanced unless persistent is asked for."""
        return self.affinity_mode or "balanced"


AnyTier = Annotated[Tier | IngressNginx, Field(discriminator="kind")]
_TIER_KINDS = ("nginx", "haproxy", "ingress-nginx")


class App(_Model):
    replicas: int = Field(3, ge=1, le=100)
    service: ServiceSpec = ServiceSpec()
    ping_interval: Duration = 25.0
    ping_timeout: Duration = 20.0


Expectation = Literal["pass", "fail", "n/a"]


class Expected(_Model):
    continuity: Expectation
    affinity: Expectation
    balance: Expectation


ClientMode = Literal["polling", "upgrade", "websocket"]
AddressMode = Literal["unique", "shared-24", "single"]
Condition = Literal["unique", "shared-24", "single", "converged"]


class Clients(_Model):
    """Which kinds of Socket.IO client swarm the topology by default."""

    modes: tuple[ClientMode, ...] = Field(("polling", "upgrade", "websocket"), min_length=1)


class PartialExpected(_Model):
    continuity: Expectation | None = None
    affinity: Expectation | None = None
    balance: Expectation | None = None


class Topology(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    description: str = ""
    nodes: int = Field(3, ge=1, le=20)
    load_balancer: LoadBalancer = LoadBalancer()
    tier: AnyTier | None = None
    app: App = App()
    clients: Clients = Clients()
    expected: Expected
    # verdicts that differ when clients share addresses (e.g. ip_hash with many clients in one /24), and when
    # every session of the run was served by one pod of several ("converged": every node's chain of random
    # kube-proxy choices ended on the same pod, the luck that makes a broken recipe look sound)
    expected_with: dict[Condition, PartialExpected] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        if self.tier is None and self.load_balancer.proxy_protocol != "none":
            raise ValueError(
                "load_balancer.proxy_protocol must be 'none' when there is no tier: the app does not read "
                "PROXY headers (add a tier that does, or set proxy_protocol: none)"
            )
        return self

    @property
    def proxy_tier(self) -> Tier | None:
        """The tier when it is nginx or HAProxy pods run from a template (what both backends can run)."""
        return self.tier if isinstance(self.tier, Tier) else None

    @property
    def ingress(self) -> IngressNginx | None:
        """The tier when it is the ingress-nginx controller."""
        return self.tier if isinstance(self.tier, IngressNginx) else None

    @property
    def kind_only(self) -> bool:
        """Only a real cluster runs it (kind or kubeconfig backend): the ingress-nginx controller is a Kubernetes
        controller, not a process the local backend can start."""
        return self.ingress is not None

    @property
    def entry_service(self) -> ServiceSpec:
        """The Service exposed as NodePort: the tier's, or the app's when there is no tier."""
        return self.tier.service if self.tier else self.app.service

    def expected_verdicts(self, client_addresses: str = "unique", *, converged: bool = False) -> dict[str, str]:
        """The expected verdict per check, for clients with the given kind of source addresses, and for a run
        whose sessions all converged on one pod when ``converged``."""
        verdicts = dict(self.expected.model_dump())
        for condition in (client_addresses, *(["converged"] if converged else [])):
            override = self.expected_with.get(condition)  # type: ignore[call-overload]
            if override is not None:
                verdicts.update({k: v for k, v in override.model_dump().items() if v is not None})
        return verdicts


def topologies_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "clusters" / "topologies"


def available_topologies(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or topologies_dir()).glob("*.yaml"))


def _line_of(node: yaml.Node | None, loc: Sequence[str]) -> int | None:
    """The line (1-based) of the YAML node at ``loc`` (a field path), or of the deepest part of it present."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if found is None:
                key = next((k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = found
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _describe_error(err: Mapping[str, Any], root: yaml.Node | None = None) -> str:
    loc = [str(part) for part in err.get("loc", ())]
    # a tier's kind picks its model; pydantic puts that tag in the location (tier.ingress-nginx.hash_by)
    loc = [p for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "tier" and p in _TIER_KINDS)]
    field = ".".join(loc) or "(top level)"
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        msg = "unknown field (check the spelling; see clusters/topologies/README.md for the fields)"
    elif err.get("type") == "missing":
        msg = "required field is missing"
    line = _line_of(root, loc[:-1] if err.get("type") == "missing" else loc)
    return f"line {line}, field {field}: {msg}" if line is not None else f"field {field}: {msg}"


def load_topology(name_or_path: str | Path, directory: Path | None = None) -> Topology:
    """Load a built-in topology by name or any topology file by path, validating every field."""
    path = Path(name_or_path)
    if not path.suffix:
        path = (directory or topologies_dir()) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(available_topologies(directory)) or "none"
        raise TopologyError(f"no topology {str(name_or_path)!r}: {path} does not exist (built-in: {known})")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise TopologyError(f"{path}{where}: not valid YAML: {what}") from None
    if not isinstance(data, dict):
        raise TopologyError(f"{path}: expected a mapping of fields at the top level")
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        lines = "; ".join(_describe_error(e, root) for e in exc.errors())
        raise TopologyError(f"{path}: {lines}") from None
    if topology.proxy_tier is not None:
        template = Path(__file__).resolve().parent.parent / "clusters" / "templates" / topology.proxy_tier.template
        if not template.is_file():
            raise TopologyError(f"{path}: field tier.template: {template} does not exist")
    return topology
