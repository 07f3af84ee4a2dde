"""The load-balancer simulator over real loopback sockets: round robin per connection, the PROXY header it
prepends (decoded by our strict codec), idle timeout, and nodes taken out of rotation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from harness.net.lb import BalancerConfig, LoadBalancer, Target
from harness.net.proxyproto import ProxyHeader, read_header

CLIENT = "127.66.5.4"


class Node:
    def __init__(self, name: str, host: str, header: bool) -> None:
        self.name = name
        self.host = host
        self.header = header
        self.seen: list[tuple[ProxyHeader | None, str, bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, self.host, 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header, rest = (await read_header(reader, timeout=2)) if self.header else (None, b"")
        data = rest or await reader.read(100)
        self.seen.append((header, writer.get_extra_info("peername")[0], data))
        writer.write(self.name.encode())
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client or the balancer closes
        writer.close()


async def start(proxy_protocol: str, idle: float = 30.0) -> tuple[LoadBalancer, list[Node], int]:
    nodes = [Node(f"node-{i}", f"127.2.0.{i + 1}", proxy_protocol != "none") for i in range(3)]
    targets = tuple([Target(n.name, n.host, await n.start()) for n in nodes])
    lb = LoadBalancer(BalancerConfig(("127.1.0.1", 0), targets, "127.1.0.1", proxy_protocol, idle))
    await lb.start()
    assert lb._server is not None
    return lb, nodes, int(lb._server.sockets[0].getsockname()[1])


async def stop(lb: LoadBalancer, nodes: list[Node]) -> None:
    await lb.close()
    for node in nodes:
        assert node.server is not None
        node.server.close()


async def exchange(port: int, payload: bytes = b"GET / HTTP/1.1\r\n\r\n") -> tuple[str, int]:
    reader, writer = await asyncio.open_connection("127.1.0.1", port, local_addr=(CLIENT, 0))
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(payload)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    await writer.wait_closed()
    return answer.decode(), local_port


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_round_robin_per_connection_with_the_clients_address_in_the_header(version: str) -> None:
    async def scenario() -> tuple[list[str], list[Any], int]:
        lb, nodes, port = await start(version)
        answers, ports = [], []
        for _ in range(6):
            answer, sport = await exchange(port)
            answers.append(answer)
            ports.append(sport)
        seen = [s for n in nodes for s in n.seen]
        await stop(lb, nodes)
        return answers, [(s, ports) for s in seen], port

    answers, seen, lb_port = asyncio.run(scenario())
    assert answers == ["node-0", "node-1", "node-2"] * 2  # one client's connections spread over every node
    for (header, peer, data), ports in seen:
        assert header is not None and header.version == (1 if version == "v1" else 2)
        assert header.source is not None and header.source[0] == CLIENT and header.source[1] in ports
        assert header.destination == ("127.1.0.1", lb_port)
        assert peer == "127.1.0.1"  # the node sees the balancer, as behind a Classic ELB
        assert data.startswith(b"GET / ")  # the payload follows the header unchanged


def test_no_header_mode_forwards_bytes_untouched() -> None:
    async def scenario() -> list[bytes]:
        lb, nodes, port = await start("none")
        await exchange(port, b"PING")
        seen = [s[2] for n in nodes for s in n.seen]
        await stop(lb, nodes)
        return seen

    assert asyncio.run(scenario()) == [b"PING"]


def test_idle_connection_is_closed_by_the_balancer() -> None:
    async def scenario() -> tuple[bytes, int]:
        lb, nodes, port = await start("v1", idle=0.3)
        reader, writer = await asyncio.open_connection("127.1.0.1", port)
        writer.write(b"hello")
        await writer.drain()
        first = await asyncio.wait_for(reader.read(100), 5)
        rest = await asyncio.wait_for(reader.read(), 5)  # no more traffic: the balancer closes within ~0.3 s
        writer.close()
        idle = lb.counters["node-0"].idle_closed
        await stop(lb, nodes)
        return first + rest, idle

    data, idle_closed = asyncio.run(scenario())
    assert data == b"node-0"
    assert idle_closed == 1


def test_a_node_out_of_rotation_gets_no_connections_and_comes_back() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        lb, nodes, port = await start("v1")
        lb.set_enabled("node-1", False)
        without = [(await exchange(port))[0] for _ in range(4)]
        lb.set_enabled("node-1", True)
        back = [(await exchange(port))[0] for _ in range(3)]
        await stop(lb, nodes)
        return without, back

    without, back = asyncio.run(scenario())
    assert "node-1" not in without and set(without) == {"node-0", "node-2"}
    assert "node-1" in back
