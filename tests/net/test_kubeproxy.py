"""The kube-proxy model: each rule of REFERENCE.md's kube-proxy section, and real forwarding over loopback."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from harness.net.kubeproxy import Endpoint, ServiceProxy, ServiceRule


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoints(n: int, nodes: int = 3) -> list[Endpoint]:
    return [Endpoint(f"app-{i}", f"127.4.0.{i + 1}", 8000, f"node-{i % nodes}") for i in range(n)]


def proxy(
    affinity: str = "ClientIP",
    *,
    timeout: float = 10800,
    local_only: bool = False,
    node: str = "node-0",
    seed: int = 1,
    clock: FakeClock | None = None,
    n: int = 3,
) -> ServiceProxy:
    rule = ServiceRule("app", affinity, timeout, snat=not local_only, local_only=local_only)
    p = ServiceProxy(node, "127.2.0.1", rule, seed, clock=clock or FakeClock())
    p.set_endpoints(endpoints(n))
    return p


def test_client_ip_affinity_keeps_a_source_on_one_endpoint() -> None:
    p = proxy()
    picks = {p.choose("127.9.9.9").name for _ in range(50)}  # type: ignore[union-attr]
    assert len(picks) == 1


def test_without_affinity_connections_spread_over_every_endpoint() -> None:
    p = proxy("None")
    picks = Counter(p.choose("127.9.9.9").name for _ in range(300))  # type: ignore[union-attr]
    assert set(picks) == {"app-0", "app-1", "app-2"}


def test_affinity_entry_expires_after_timeout_seconds_without_new_connections() -> None:
    clock = FakeClock()
    p = proxy(timeout=5, clock=clock)
    first = p.choose("127.9.9.9")
    assert p.affinity_table() == {"127.9.9.9": first.name}  # type: ignore[union-attr]
    clock.now += 4
    assert p.choose("127.9.9.9") == first  # refreshes the entry, like iptables `recent --set`
    clock.now += 4.5
    assert p.choose("127.9.9.9") == first
    clock.now += 6
    assert p.affinity_table() == {}
    # After expiry the next choice is drawn afresh: over many keys some must move.
    moved = 0
    for i in range(40):
        src = f"127.8.0.{i + 1}"
        before = p.choose(src)
        clock.now += 6
        moved += p.choose(src) != before
    assert moved > 0


def test_state_is_per_node() -> None:
    tables = {node: proxy(node=node) for node in ("node-0", "node-1", "node-2", "node-3", "node-4")}
    picks = {node: p.choose("127.1.0.1").name for node, p in tables.items()}  # type: ignore[union-attr]
    assert len(set(picks.values())) > 1, picks  # independent choices for the same source


def test_first_choice_depends_on_seed_node_and_key_not_on_arrival_order() -> None:
    a, b = proxy(seed=7), proxy(seed=7)
    keys = [f"127.8.0.{i}" for i in range(1, 20)]
    first = {k: a.choose(k) for k in keys}
    second = {k: b.choose(k) for k in reversed(keys)}
    assert first == second


def test_local_policy_uses_only_endpoints_on_its_node_and_drops_without_one() -> None:
    p = proxy("None", local_only=True, node="node-1")
    assert {p.choose("127.9.9.9").name for _ in range(30)} == {"app-1"}  # type: ignore[union-attr]
    p.set_endpoints([e for e in endpoints(3) if e.node != "node-1"])
    assert p.choose("127.9.9.9") is None


def test_removed_or_unready_endpoint_loses_its_affinity_entries() -> None:
    p = proxy()
    first = p.choose("127.9.9.9")
    assert first is not None
    p.set_endpoints([e for e in endpoints(3) if e.name != first.name])
    assert "127.9.9.9" not in p.affinity_table()
    assert p.choose("127.9.9.9").name != first.name  # type: ignore[union-attr]
    # Not ready counts as gone too.
    second = p.choose("127.9.9.9")
    assert second is not None
    p.set_endpoints([Endpoint(e.name, e.host, e.port, e.node, ready=e.name != second.name) for e in endpoints(3)])
    assert p.choose("127.9.9.9").name not in {second.name}  # type: ignore[union-attr]


def test_new_endpoints_receive_only_new_clients() -> None:
    p = proxy(n=2)
    old = {f"127.8.0.{i}": p.choose(f"127.8.0.{i}") for i in range(1, 30)}
    p.set_endpoints(endpoints(4))
    assert all(p.choose(k) == e for k, e in old.items())
    fresh = Counter(p.choose(f"127.7.0.{i}").name for i in range(1, 200))  # type: ignore[union-attr]
    assert fresh["app-2"] > 0 and fresh["app-3"] > 0


@pytest.mark.parametrize("snat", [True, False])
def test_forwarding_over_loopback_with_and_without_snat(snat: bool) -> None:
    """A real connection through the model: bytes arrive, and the pod sees the node (SNAT) or the client."""

    async def scenario() -> tuple[bytes, str]:
        seen: list[str] = []

        async def pod(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("peername")[0])
            data = await reader.read(100)
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(pod, "127.4.0.1", 0)
        pod_port = server.sockets[0].getsockname()[1]
        rule = ServiceRule("app", "None", 10800, snat=snat, local_only=False)
        model = ServiceProxy("node-0", "127.2.0.1", rule, 1)
        model.set_endpoints([Endpoint("app-0", "127.4.0.1", pod_port, "node-0")])
        front = await asyncio.start_server(model.handle, "127.2.0.1", 0)
        port = front.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.2.0.1", port, local_addr=("127.77.0.9", 0))
        writer.write(b"hello")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        await writer.wait_closed()
        for s in (front, server):
            s.close()
            await s.wait_closed()
        assert model.per_endpoint == {"app-0": 1}
        return answer, seen[0]

    answer, peer = asyncio.run(scenario())
    assert answer == b"HELLO"
    assert peer == ("127.2.0.1" if snat else "127.77.0.9")
