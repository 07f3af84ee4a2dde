"""The load-balancer simulator over real loopback sockets: round robin per connection, the PROXY header it
prepends (decoded by our strict codec), idle timeout, nodes taken out of rotation, NLB flow hashing and
stickiness, health checks, draining, counters, and robustness against misbehaving clients and nodes.

Every test runs on the event loop the simulator runs on in production (uvloop when installed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from harness.net.lb import BalancerConfig, BalancerError, HealthCheck, LoadBalancer, Target, event_loop_factory
from harness.net.proxyproto import ProxyHeader, read_header
from harness.topology import LoadBalancer as LoadBalancerSettings

CLIENT = "127.66.5.4"
LB_IP = "127.1.0.1"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coro)


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll until ``condition`` holds; a deadline only to fail clearly, never to measure speed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Node:
    """A node behind the balancer: reads the PROXY header (when one is expected), records it, answers with its
    name (or runs ``behaviour``), then waits for the other side to close."""

    def __init__(
        self,
        name: str,
        host: str,
        header: bool,
        behaviour: Callable[[Node, asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.header = header
        self.behaviour = behaviour
        self.seen: list[tuple[ProxyHeader | None, str, bytes]] = []
        self.errors: list[BaseException] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.open = 0

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(
            self.handle, self.host, port or self.port, reuse_address=True, backlog=1024
        )
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            header, rest = (await read_header(reader, timeout=2)) if self.header else (None, b"")
            if self.behaviour is not None:
                self.seen.append((header, writer.get_extra_info("peername")[0], rest))
                await self.behaviour(self, reader, writer, rest)
                return
            data = rest or await reader.read(100)
            self.seen.append((header, writer.get_extra_info("peername")[0], data))
            writer.write(self.name.encode())
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the client or the balancer closes
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            self.errors.append(exc)
        except Exception as exc:  # a header error, recorded for the test to look at
            self.errors.append(exc)
        finally:
            self.open -= 1
            writer.close()


async def start(
    proxy_protocol: str = "v1",
    idle: float = 30.0,
    *,
    n: int = 3,
    behaviour: Callable[[Node, asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]] | None = None,
    **config: Any,
) -> tuple[LoadBalancer, list[Node], int]:
    nodes = [Node(f"node-{i}", f"127.2.0.{i + 1}", proxy_protocol != "none", behaviour) for i in range(n)]
    targets = tuple([Target(node.name, node.host, await node.start()) for node in nodes])
    lb = LoadBalancer(BalancerConfig((LB_IP, 0), targets, LB_IP, proxy_protocol, idle, **config))
    await lb.start()
    return lb, nodes, lb.address[1]


async def stop(lb: LoadBalancer, nodes: list[Node]) -> None:
    await lb.close()
    for node in nodes:
        await node.stop()


async def connect(port: int, source: str = CLIENT) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LB_IP, port, local_addr=(source, 0))


async def exchange(port: int, payload: bytes = b"GET / HTTP/1.1\r\n\r\n", source: str = CLIENT) -> tuple[str, int]:
    reader, writer = await connect(port, source)
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(payload)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    await writer.wait_closed()
    return answer.decode(), local_port


def rst_close(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, as a crashed or impatient client does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def how_it_ends(reader: asyncio.StreamReader) -> str:
    """Read until the connection ends: "eof", "reset", or "data" when bytes came before the end."""
    try:
        return "eof" if await asyncio.wait_for(reader.read(), 5) == b"" else "data"
    except ConnectionResetError:
        return "reset"


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- spreading and the header ---------------------------------------------------------------------------------


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

    answers, seen, lb_port = run(scenario())
    assert answers == ["node-0", "node-1", "node-2"] * 2  # one client's connections spread over every node
    for (header, peer, data), ports in seen:
        assert header is not None and header.version == (1 if version == "v1" else 2)
        assert header.source is not None and header.source[0] == CLIENT and header.source[1] in ports
        assert header.destination == (LB_IP, lb_port)
        assert peer == LB_IP  # the node sees the balancer, as behind a Classic ELB
        assert data.startswith(b"GET / ")  # the payload follows the header unchanged


def test_no_header_mode_forwards_bytes_untouched() -> None:
    async def scenario() -> list[bytes]:
        lb, nodes, port = await start("none", mode="tcp")
        await exchange(port, b"PING")
        seen = [s[2] for n in nodes for s in n.seen]
        await stop(lb, nodes)
        return seen

    assert run(scenario()) == [b"PING"]


def test_nlb_source_ip_stickiness_keeps_a_source_on_one_node_and_spreads_sources() -> None:
    async def scenario() -> tuple[set[str], Counter[str]]:
        lb, nodes, port = await start("v2", mode="nlb", source_ip_stickiness=True, seed=7)
        one_source = {(await exchange(port))[0] for _ in range(12)}
        many = Counter([(await exchange(port, source=f"127.66.{i}.{i + 10}"))[0] for i in range(30)])
        await stop(lb, nodes)
        return one_source, many

    one_source, many = run(scenario())
    assert len(one_source) == 1  # every connection of one address, whatever its port, on one node
    assert len(many) >= 2  # different sources land on different nodes


def test_nlb_flow_hash_spreads_the_connections_of_one_source_and_is_seeded() -> None:
    async def picks(seed: int) -> list[str]:
        lb, nodes, port = await start("v2", mode="nlb", seed=seed)
        chosen = []
        for i in range(20):
            peer, local = (CLIENT, 40000 + i), (LB_IP, 8080)
            target = lb._choose(peer, local)
            assert target is not None
            chosen.append(target.name)
        spread = {(await exchange(port))[0] for _ in range(20)}
        await stop(lb, nodes)
        assert len(spread) >= 2  # a new flow (new source port) may go anywhere
        return chosen

    assert run(picks(3)) == run(picks(3))  # the same flows, the same nodes: a run can be replayed


def test_config_from_topology_settings() -> None:
    settings = LoadBalancerSettings.model_validate(
        {
            "mode": "nlb",
            "proxy_protocol": "v2",
            "idle_timeout": "350s",
            "source_ip_stickiness": True,
            "draining_timeout": "30s",
            "health_check": {"interval": "5s", "timeout": "2s", "unhealthy_threshold": 3, "healthy_threshold": 4},
        }
    ).model_dump(mode="json")
    config = BalancerConfig.from_settings(listen=(LB_IP, 0), targets=(), source_ip=LB_IP, settings=settings, seed=9)
    assert (config.mode, config.proxy_protocol, config.idle_timeout) == ("nlb", "v2", 350.0)
    assert config.source_ip_stickiness and config.draining_timeout == 30.0 and config.seed == 9
    assert config.health_check == HealthCheck(5.0, 2.0, 3, 4)
    with pytest.raises(BalancerError, match="needs mode nlb"):
        BalancerConfig((LB_IP, 0), (), LB_IP, mode="elb", source_ip_stickiness=True)
    with pytest.raises(BalancerError, match="mode"):
        BalancerConfig((LB_IP, 0), (), LB_IP, mode="alb")


# --- idle timeout -----------------------------------------------------------------------------------------------


def test_idle_connection_is_closed_by_the_balancer() -> None:
    async def scenario() -> tuple[bytes, int]:
        lb, nodes, port = await start("v1", idle=0.3)
        reader, writer = await asyncio.open_connection(LB_IP, port)
        writer.write(b"hello")
        await writer.drain()
        first = await asyncio.wait_for(reader.read(100), 5)
        rest = await asyncio.wait_for(reader.read(), 5)  # no more traffic: the balancer closes (a FIN)
        writer.close()
        idle = lb.counters["node-0"].idle_closed
        await stop(lb, nodes)
        return first + rest, idle

    data, idle_closed = run(scenario())
    assert data == b"node-0"
    assert idle_closed == 1


def test_nlb_idle_timeout_resets_both_sides() -> None:
    async def scenario() -> tuple[type[BaseException] | None, int, int]:
        lb, nodes, port = await start("v2", idle=0.3, mode="nlb")
        reader, writer = await connect(port)
        writer.write(b"hello")
        await writer.drain()
        await asyncio.wait_for(reader.read(100), 5)
        error: type[BaseException] | None = None
        try:
            await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError as exc:
            error = type(exc)
        writer.close()
        total = sum(c.idle_closed for c in lb.counters.values())
        resets = sum(c.resets for c in lb.counters.values())
        await stop(lb, nodes)
        return error, total, resets

    error, idle_closed, resets = run(scenario())
    assert error is ConnectionResetError  # NLB drops the flow: the client's next read is a reset
    assert idle_closed == 1 and resets == 1


# --- rotation, health checks, draining ------------------------------------------------------------------------


def test_a_node_out_of_rotation_gets_no_connections_and_comes_back() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        lb, nodes, port = await start("v1")
        lb.set_enabled("node-1", False)
        without = [(await exchange(port))[0] for _ in range(4)]
        lb.set_enabled("node-1", True)
        back = [(await exchange(port))[0] for _ in range(3)]
        await stop(lb, nodes)
        return without, back

    without, back = run(scenario())
    assert "node-1" not in without and set(without) == {"node-0", "node-2"}
    assert "node-1" in back


def test_no_node_in_rotation_resets_the_client_and_counts_it() -> None:
    async def scenario() -> tuple[bool, int]:
        lb, nodes, port = await start("v1", n=1)
        lb.set_enabled("node-0", False)
        reader, writer = await connect(port)
        refused = await how_it_ends(reader) != "data"
        writer.close()
        rejected = lb.rejected
        await stop(lb, nodes)
        return refused, rejected

    assert run(scenario()) == (True, 1)


def test_health_checks_take_a_dead_node_out_and_put_it_back() -> None:
    check = HealthCheck(interval=0.05, timeout=0.5, unhealthy_threshold=2, healthy_threshold=3)

    async def scenario() -> tuple[list[str], list[str], dict[str, Any]]:
        lb, nodes, port = await start("v1", health_check=check)
        await nodes[1].stop()  # the node's listener dies: connects are refused
        await wait_for(lambda: "node-1" not in lb.in_rotation(), "node-1 out of rotation")
        health = lb.snapshot()["health"]["node-1"]
        without = [(await exchange(port))[0] for _ in range(4)]
        await nodes[1].start(nodes[1].port)  # restarted on the same port
        await wait_for(lambda: "node-1" in lb.in_rotation(), "node-1 back in rotation")
        back = [(await exchange(port))[0] for _ in range(3)]
        await stop(lb, nodes)
        return without, back, health

    without, back, health = run(scenario())
    assert set(without) == {"node-0", "node-2"}
    assert "node-1" in back
    assert health["healthy"] is False and health["last_error"]


def test_draining_keeps_open_connections_then_resets_them() -> None:
    async def scenario() -> dict[str, Any]:
        lb, nodes, port = await start("v1", n=2, draining_timeout=0.6)
        reader, writer = await connect(port)  # the first connection goes to node-0
        writer.write(b"hi")
        assert await asyncio.wait_for(reader.read(100), 5) == b"node-0"
        lb.set_enabled("node-0", False)
        during = [(await exchange(port))[0] for _ in range(3)]  # new connections avoid the draining node
        writer.write(b"still there")  # the open connection still works while draining
        await writer.drain()
        await wait_for(lambda: lb.counters["node-0"].bytes_up >= len(b"hi still there"), "bytes through draining")
        draining = lb.snapshot()["draining"]
        ended = await how_it_ends(reader)
        writer.close()
        result = {
            "during": during,
            "draining": draining,
            "ended": ended,
            "drained": lb.counters["node-0"].drained,
            "after": lb.snapshot()["draining"],
        }
        await stop(lb, nodes)
        return result

    result = run(scenario())
    assert result["during"] == ["node-1"] * 3
    assert result["draining"] == ["node-0"]
    assert result["ended"] == "reset" and result["drained"] == 1
    assert result["after"] == []


def test_a_node_put_back_before_the_draining_timeout_keeps_its_connections() -> None:
    async def scenario() -> tuple[bytes, int]:
        lb, nodes, port = await start("v1", n=1, draining_timeout=0.3)
        reader, writer = await connect(port)
        writer.write(b"hi")
        await asyncio.wait_for(reader.read(100), 5)
        lb.set_enabled("node-0", False)
        lb.set_enabled("node-0", True)
        await asyncio.sleep(0.5)  # past the draining timeout that no longer applies
        writer.write(b"more")
        await writer.drain()
        await wait_for(lambda: lb.counters["node-0"].bytes_up >= len(b"PROXY") + 6, "bytes after re-enabling")
        writer.close()
        await writer.wait_closed()
        drained = lb.counters["node-0"].drained
        up = lb.counters["node-0"].bytes_up
        await stop(lb, nodes)
        return b"ok" if up else b"", drained

    assert run(scenario()) == (b"ok", 0)


# --- counters ---------------------------------------------------------------------------------------------------


def test_counters_per_node_are_readable_while_running() -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        lb, nodes, port = await start("v1", n=2)
        reader, writer = await connect(port)
        writer.write(b"abc")
        await asyncio.wait_for(reader.read(100), 5)
        during = lb.snapshot()
        writer.close()
        await writer.wait_closed()
        await wait_for(lambda: lb.counters["node-0"].active == 0, "the connection to end")
        after = lb.snapshot()
        await stop(lb, nodes)
        return during, after

    during, after = run(scenario())
    node = during["nodes"]["node-0"]
    assert node["connections"] == 1 and node["active"] == 1
    assert node["bytes_up"] > 3 and node["bytes_down"] == len(b"node-0")  # the header counts upstream
    assert set(node) >= {"connections", "active", "bytes_up", "bytes_down", "resets", "header_errors", "errors"}
    assert after["nodes"]["node-0"]["active"] == 0
    assert during["nodes"]["node-1"]["connections"] == 0
    assert during["mode"] == "elb" and during["in_rotation"] == ["node-0", "node-1"]


def test_a_refused_connect_is_an_error_and_resets_the_client() -> None:
    async def scenario() -> tuple[bool, int, int]:
        lb, nodes, port = await start("v1", n=1)
        await nodes[0].stop()
        reader, writer = await connect(port)
        writer.write(b"x")
        gone = await how_it_ends(reader) != "data"
        writer.close()
        await wait_for(lambda: lb.counters["node-0"].active == 0, "the connection to end")
        counters = lb.counters["node-0"]
        await stop(lb, nodes)
        return gone, counters.errors, counters.resets

    assert run(scenario()) == (True, 1, 0)


def black_hole(host: str) -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full: Linux drops further SYNs, so a connect to it hangs, as to a node
    that went away without a trace."""
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises(TimeoutError):
            probe.connect(listener.getsockname())  # the setup itself: a connect that does not complete
    finally:
        probe.close()
    return listener, fillers


def test_a_connect_that_never_completes_times_out_resets_the_client_and_counts_an_error() -> None:
    listener, fillers = black_hole("127.2.0.9")

    async def scenario() -> tuple[bool, float, int, int]:
        target = Target("node-0", "127.2.0.9", listener.getsockname()[1])
        lb = LoadBalancer(BalancerConfig((LB_IP, 0), (target,), LB_IP, "v1", 30.0, connect_timeout=0.5))
        await lb.start()
        started = time.monotonic()
        reader, writer = await connect(lb.address[1])
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        gone = await how_it_ends(reader) != "data"
        waited = time.monotonic() - started
        writer.close()
        await wait_for(lambda: lb.counters["node-0"].active == 0, "the connection to end")
        counters = lb.counters["node-0"]
        await lb.close()
        return gone, waited, counters.errors, counters.connections

    try:
        gone, waited, errors, connections = run(scenario())
    finally:
        for sock in (listener, *fillers):
            sock.close()
    assert gone and (errors, connections) == (1, 1)
    assert 0.4 <= waited < 3.0  # the connect timeout (0.5 s) ended it, not the client's own wait


# --- robustness -------------------------------------------------------------------------------------------------


async def echo(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
    if rest:
        writer.write(rest)
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def reply_after_eof(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
    request = rest + await reader.read()  # until the client's half-close
    writer.write(b"got " + str(len(request)).encode())
    await writer.drain()


def test_client_reset_mid_stream_resets_the_node_side_and_leaves_the_balancer_serving() -> None:
    async def scenario() -> tuple[int, int, int, str]:
        lb, nodes, port = await start("v1", n=1, behaviour=echo)
        reader, writer = await connect(port)
        writer.write(b"x" * 10000)
        await writer.drain()
        await reader.readexactly(10000)
        writer.write(b"y" * 5000)
        rst_close(writer)
        await wait_for(lambda: lb.counters["node-0"].active == 0, "the reset to reach the balancer")
        await wait_for(lambda: nodes[0].open == 0, "the node's side to close")
        resets, active = lb.counters["node-0"].resets, lb.counters["node-0"].active
        reader2, writer2 = await connect(port)
        writer2.write(b"again")
        answer = await asyncio.wait_for(reader2.readexactly(5), 5)
        writer2.close()
        await stop(lb, nodes)
        return resets, active, len(nodes[0].errors), answer.decode()

    resets, active, _node_errors, answer = run(scenario())
    assert resets == 1 and active == 0
    assert answer == "again"


def test_half_close_passes_on_and_the_answer_still_comes_back() -> None:
    async def scenario() -> bytes:
        lb, nodes, port = await start("v1", n=1, behaviour=reply_after_eof)
        reader, writer = await connect(port)
        writer.write(b"a request of 25 bytes....")
        writer.write_eof()  # the client is done sending, and still reads
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await stop(lb, nodes)
        return answer

    assert run(scenario()) == b"got 25"


def test_slowloris_client_gets_its_header_sent_at_once_and_blocks_nobody() -> None:
    """The balancer sends the header, it does not read one: a client trickling bytes must neither hold the
    header back (the node sees it before any client byte) nor slow other clients down."""
    chunks: list[bytes] = []

    async def record(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
        if rest:
            chunks.append(rest)
        while data := await reader.read(100):
            chunks.append(data)
        writer.write(b"done")

    async def scenario() -> tuple[int, bytes, str]:
        lb, nodes, port = await start("v1", n=2, behaviour=record)
        reader, writer = await connect(port)  # → node-0, sends nothing yet
        await wait_for(lambda: len(nodes[0].seen) == 1, "the header to reach node-0 before any client byte")
        nodes[1].behaviour = None
        other, _ = await exchange(port)  # → node-1, served while the slow client trickles
        for byte in b"GET / HTTP/1.1\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await stop(lb, nodes)
        return len(chunks), b"".join(chunks), other + "/" + answer.decode()

    count, data, answers = run(scenario())
    assert data == b"GET / HTTP/1.1\r\n"  # in order, whole
    assert count > 1  # it did arrive in pieces
    assert answers == "node-1/done"


def test_a_node_that_does_not_read_pauses_the_client_instead_of_filling_memory() -> None:
    async def never_read(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
        await asyncio.sleep(30)

    async def scenario() -> tuple[int, int]:
        lb, nodes, port = await start("none", n=1, behaviour=never_read, mode="tcp")
        _reader, writer = await connect(port)
        sent = 0
        chunk = b"z" * 65536
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):  # a bound on the test, not a measurement
                while sent < 64 * 1024 * 1024:
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
        splice = next(iter(lb._live["node-0"]))
        assert splice.server.transport is not None
        buffered = splice.server.transport.get_write_buffer_size() + splice.pending_size
        rst_close(writer)
        await stop(lb, nodes)
        return sent, buffered

    sent, buffered = run(scenario())
    assert sent < 64 * 1024 * 1024  # the client was held back
    assert buffered < 4 * 1024 * 1024  # and the balancer did not hoard what the node would not take


def test_two_thousand_connections_leave_the_fd_count_at_baseline() -> None:
    async def scenario() -> tuple[int, int, int, int]:
        lb, nodes, port = await start("v1", behaviour=echo)
        baseline = fd_count()
        gate = asyncio.Semaphore(400)

        async def one(i: int) -> int:
            async with gate:
                reader, writer = await connect(port, source=f"127.66.{i % 50}.{i % 200 + 1}")
                try:
                    writer.write(b"p" * 100)
                    await writer.drain()
                    await reader.readexactly(100)
                    if i % 3 == 0:
                        rst_close(writer)  # a third of them leave with a reset
                        return 1
                    if i % 3 == 1:
                        writer.write_eof()  # a third half-close first
                        await reader.read()
                    writer.close()
                    await writer.wait_closed()
                    return 1
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer.close()
                    return 0

        done = sum(await asyncio.gather(*(one(i) for i in range(2000))))
        await wait_for(lambda: all(c.active == 0 for c in lb.counters.values()), "every connection to end", 20)
        await wait_for(lambda: fd_count() <= baseline, "the fd count back at its baseline", 20)
        total = sum(c.connections for c in lb.counters.values())
        after = fd_count()
        await stop(lb, nodes)
        return done, total, baseline, after

    done, total, baseline, after = run(scenario())
    assert done == 2000 and total == 2000
    assert after == baseline


def test_close_resets_whatever_is_still_open() -> None:
    async def scenario() -> tuple[str, int]:
        lb, nodes, port = await start("v1", n=1)
        reader, writer = await connect(port)
        writer.write(b"x")
        await asyncio.wait_for(reader.read(100), 5)
        await lb.close()
        ended = await how_it_ends(reader)
        writer.close()
        for node in nodes:
            await node.stop()
        return ended, sum(len(s) for s in lb._live.values())

    assert run(scenario()) == ("reset", 0)
