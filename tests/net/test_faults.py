"""Faults on demand in the balancer's data path, each shown over real loopback sockets: Toxiproxy's toxics
(latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data), header faults (malformed, duplicated,
delayed), out_of_rotation; per node or for all, set and cleared at runtime; and the control ops of netd.

Where a fault is about time, only lower bounds are asserted (a delay cannot come early); nothing measures speed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from harness.net.faults import Fault, FaultError, FaultSet, plan_header
from harness.net.lb import BalancerConfig, LoadBalancer, Target
from harness.net.netd import NetDaemon, NetPlan, NodePlan, ServicePlan
from harness.net.proxyproto import HeaderReader, ProxyProtocolError, encode, read_header
from tests.net.test_lb import Node, connect, exchange, run, start, stop, wait_for

PAYLOAD = bytes(range(256)) * 4  # 1 KiB a node sends back
# uvloop's clock (libuv's) counts whole milliseconds, cached per loop iteration: a timer may fire up to about a
# millisecond before time.monotonic() says it is due
EARLY = 0.005


async def answer_1k(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
    """Answer each request (any bytes) with 1 KiB, until the other side closes."""
    data = rest or await reader.read(65536)
    while data:
        writer.write(PAYLOAD)
        await writer.drain()
        data = await reader.read(65536)


async def send_then_close(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
    writer.write(PAYLOAD)
    await writer.drain()


async def read_all(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
    received = rest + await reader.read()
    node.seen.append((None, "all", received))


async def faulty(
    fault: dict[str, Any], behaviour: Any = answer_1k, **config: Any
) -> tuple[LoadBalancer, list[Node], int]:
    lb, nodes, port = await start("v1", n=1, behaviour=behaviour, **config)
    lb.add_fault(Fault.from_json(fault))
    return lb, nodes, port


async def timed_exchange(port: int, request: bytes = b"GET /") -> tuple[float, bytes, str]:
    """(seconds until the whole answer or the end, what arrived, how it ended: eof | reset | open)."""
    reader, writer = await connect(port)
    started = time.monotonic()
    writer.write(request)
    await writer.drain()
    received = b""
    ended = "open"
    try:
        async with asyncio.timeout(5):
            while len(received) < len(PAYLOAD):
                chunk = await reader.read(65536)
                if not chunk:
                    ended = "eof"
                    break
                received += chunk
    except ConnectionResetError:
        ended = "reset"
    except TimeoutError:
        ended = "open"
    elapsed = time.monotonic() - started
    writer.close()
    return elapsed, received, ended


# --- toxics ------------------------------------------------------------------------------------------------------


def test_latency_delays_each_answer_by_at_least_latency_minus_jitter() -> None:
    async def scenario() -> tuple[float, bytes]:
        lb, nodes, port = await faulty({"kind": "latency", "params": {"latency": 300, "jitter": 50}})
        elapsed, data, _ = await timed_exchange(port)
        await stop(lb, nodes)
        return elapsed, data

    elapsed, data = run(scenario())
    assert data == PAYLOAD and elapsed >= 0.25 - EARLY


def test_latency_upstream_delays_what_the_client_sends() -> None:
    async def scenario() -> tuple[float, bytes]:
        lb, nodes, port = await faulty({"kind": "latency", "stream": "upstream", "params": {"latency": 250}})
        elapsed, data, _ = await timed_exchange(port)
        await stop(lb, nodes)
        return elapsed, data

    elapsed, data = run(scenario())
    assert data == PAYLOAD and elapsed >= 0.25 - EARLY


def test_bandwidth_limits_the_rate() -> None:
    async def scenario() -> tuple[float, bytes]:
        lb, nodes, port = await faulty({"kind": "bandwidth", "params": {"rate": 2}})  # 2 KB/s: 1 KiB takes ≥ 0.5 s
        elapsed, data, _ = await timed_exchange(port)
        await stop(lb, nodes)
        return elapsed, data

    elapsed, data = run(scenario())
    assert data == PAYLOAD and elapsed >= 0.45


def test_slow_close_delays_the_close_not_the_data() -> None:
    async def scenario() -> tuple[bytes, float]:
        lb, nodes, port = await faulty({"kind": "slow_close", "params": {"delay": 400}}, behaviour=send_then_close)
        reader, writer = await connect(port)
        started = time.monotonic()
        data = await asyncio.wait_for(reader.readexactly(len(PAYLOAD)), 5)
        rest = await asyncio.wait_for(reader.read(), 5)
        closed_after = time.monotonic() - started
        writer.close()
        await stop(lb, nodes)
        return data + rest, closed_after

    data, closed_after = run(scenario())
    assert data == PAYLOAD  # all of it, and nothing more
    assert closed_after >= 0.4 - EARLY  # the node closed at once; the client saw it only after the delay


def test_timeout_drops_the_data_and_closes_after_the_timeout() -> None:
    async def scenario() -> tuple[float, bytes, str]:
        lb, nodes, port = await faulty({"kind": "timeout", "params": {"timeout": 300}})
        result = await timed_exchange(port)
        await stop(lb, nodes)
        return result

    elapsed, data, ended = run(scenario())
    assert data == b"" and ended == "eof" and elapsed >= 0.25 - EARLY  # the timer starts at the accept


def test_timeout_zero_holds_the_connection_silent_until_the_fault_is_cleared() -> None:
    async def scenario() -> tuple[bool, bytes]:
        lb, nodes, port = await faulty({"kind": "timeout", "params": {"timeout": 0}})
        reader, writer = await connect(port)
        writer.write(b"first")
        silent = False
        try:
            await asyncio.wait_for(reader.read(100), 0.4)
        except TimeoutError:
            silent = True
        lb.clear_faults()
        writer.write(b"second")
        data = await asyncio.wait_for(reader.readexactly(len(PAYLOAD)), 5)
        writer.close()
        await stop(lb, nodes)
        return silent, data

    silent, data = run(scenario())
    assert silent  # while the fault is set, nothing comes back and nothing closes
    assert data == PAYLOAD  # cleared: the answer to the next request flows again


def test_reset_peer_resets_after_its_timeout() -> None:
    async def scenario() -> tuple[float, str, int]:
        lb, nodes, port = await faulty({"kind": "reset_peer", "params": {"timeout": 200}})
        reader, writer = await connect(port)
        started = time.monotonic()
        ended = "open"
        try:
            async with asyncio.timeout(5):
                while await reader.read(65536):
                    pass
                ended = "eof"
        except ConnectionResetError:
            ended = "reset"
        elapsed = time.monotonic() - started
        writer.close()
        resets = lb.counters["node-0"].resets
        await stop(lb, nodes)
        return elapsed, ended, resets

    elapsed, ended, resets = run(scenario())
    assert ended == "reset" and resets == 1 and elapsed >= 0.15 - EARLY  # the timer starts at the accept


def test_slicer_cuts_the_data_into_small_delayed_pieces() -> None:
    async def scenario() -> tuple[bytes, int]:
        lb, nodes, port = await faulty(
            {"kind": "slicer", "params": {"average_size": 64, "size_variation": 16, "delay": 20000}}
        )
        reader, writer = await connect(port)
        writer.write(b"GET /")
        received, reads = b"", 0
        async with asyncio.timeout(5):
            while len(received) < len(PAYLOAD):
                received += await reader.read(65536)
                reads += 1
        writer.close()
        await stop(lb, nodes)
        return received, reads

    received, reads = run(scenario())
    assert received == PAYLOAD  # intact and in order
    assert reads >= 4  # 1 KiB in pieces of about 64 bytes, 20 ms apart, cannot arrive in one read


def test_limit_data_closes_after_that_many_bytes() -> None:
    async def scenario() -> tuple[float, bytes, str]:
        lb, nodes, port = await faulty({"kind": "limit_data", "params": {"bytes": 100}})
        result = await timed_exchange(port)
        await stop(lb, nodes)
        return result

    _, data, ended = run(scenario())
    assert data == PAYLOAD[:100] and ended == "eof"


def test_limit_data_upstream_counts_the_clients_bytes_not_the_header() -> None:
    async def scenario() -> bytes:
        lb, nodes, port = await faulty(
            {"kind": "limit_data", "stream": "upstream", "params": {"bytes": 10}}, behaviour=read_all
        )
        reader, writer = await connect(port)
        writer.write(b"0123456789abcdefghij")
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await wait_for(lambda: len(nodes[0].seen) == 2, "the node to read until the close")
        await stop(lb, nodes)
        return nodes[0].seen[1][2]

    assert run(scenario()) == b"0123456789"


def test_toxicity_zero_spares_every_connection_and_a_half_spares_some() -> None:
    async def scenario(toxicity: float) -> list[bytes]:
        lb, nodes, port = await faulty({"kind": "limit_data", "params": {"bytes": 10}, "toxicity": toxicity}, seed=5)
        results = [(await timed_exchange(port))[1] for _ in range(16)]
        await stop(lb, nodes)
        return results

    assert all(r == PAYLOAD for r in run(scenario(0.0)))
    half = run(scenario(0.5))
    assert PAYLOAD in half and PAYLOAD[:10] in half


def test_a_toxic_reaches_connections_that_are_already_open_and_clearing_it_lets_them_recover() -> None:
    async def scenario() -> tuple[bytes, bool, bytes]:
        lb, nodes, port = await start("v1", n=1, behaviour=answer_1k)
        reader, writer = await connect(port)
        writer.write(b"1")
        before = await asyncio.wait_for(reader.readexactly(len(PAYLOAD)), 5)
        lb.add_fault(Fault("timeout", params={"timeout": 0}))
        writer.write(b"2")
        held = False
        try:
            await asyncio.wait_for(reader.read(100), 0.3)
        except TimeoutError:
            held = True
        lb.clear_faults(name="timeout_downstream")
        writer.write(b"3")
        after = await asyncio.wait_for(reader.readexactly(len(PAYLOAD)), 5)
        writer.close()
        await stop(lb, nodes)
        return before, held, after

    before, held, after = run(scenario())
    assert before == PAYLOAD and held and after == PAYLOAD


def test_a_fault_on_one_node_leaves_the_others_alone() -> None:
    async def scenario() -> dict[str, bytes]:
        lb, nodes, port = await start("v1", n=2, behaviour=answer_1k)
        lb.add_fault(Fault("limit_data", node="node-1", params={"bytes": 1}))
        answers = {}
        for name in ("node-0", "node-1"):
            _, data, _ = await timed_exchange(port)
            answers[name] = data
        await stop(lb, nodes)
        return answers

    assert run(scenario()) == {"node-0": PAYLOAD, "node-1": PAYLOAD[:1]}


# --- header faults and rotation ---------------------------------------------------------------------------------


async def header_of_one_connection(fault: dict[str, Any], version: str = "v1") -> tuple[LoadBalancer, bytes]:
    """What a node receives before any client byte, read raw."""
    received = bytearray()
    got = asyncio.Event()

    async def raw(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
        received.extend(rest)
        while chunk := await reader.read(1):
            received.extend(chunk)
            node.seen.append((None, "chunk", chunk))
            if received.endswith(b"CLIENT"):
                got.set()

    nodes = [Node("node-0", "127.2.0.1", False, raw)]
    lb = LoadBalancer(
        BalancerConfig(("127.1.0.1", 0), (Target("node-0", "127.2.0.1", await nodes[0].start()),), "127.1.0.1", version)
    )
    await lb.start()
    lb.add_fault(Fault.from_json(fault))
    _reader, writer = await connect(lb.address[1])
    writer.write(b"CLIENT")
    await asyncio.wait_for(got.wait(), 5)
    writer.close()
    await stop(lb, nodes)
    return lb, bytes(received[: -len(b"CLIENT")])


@pytest.mark.parametrize("variant", ["v1_bad_protocol", "v1_double_space", "v2_bad_crc32c", "v2_length_short"])
def test_malformed_header_is_rejected_by_a_strict_receiver(variant: str) -> None:
    lb, header = run(header_of_one_connection({"kind": "malformed", "params": {"variant": variant}}))
    with pytest.raises(ProxyProtocolError):
        HeaderReader().feed(header + b"CLIENT")
    assert lb.counters["node-0"].header_errors == 1


def test_malformed_no_header_sends_the_client_bytes_bare() -> None:
    _, header = run(header_of_one_connection({"kind": "malformed", "params": {"variant": "no_header"}}))
    assert header == b""


def test_duplicated_header_leaves_a_second_header_as_payload() -> None:
    _, data = run(header_of_one_connection({"kind": "duplicated"}, version="v2"))
    reader = HeaderReader()
    first = reader.feed(data + b"CLIENT")
    assert first is not None and first.version == 2
    second = HeaderReader().feed(reader.rest)  # what a receiver would take for the client's first bytes
    assert second is not None and second.source == first.source


def test_delayed_header_split_arrives_a_byte_at_a_time_and_then_the_client_bytes() -> None:
    lb, header = run(header_of_one_connection({"kind": "delayed", "params": {"delay": 200, "split": True}}))
    decoded = HeaderReader().feed(header)
    assert decoded is not None and decoded.version == 1  # whole, once all bytes are in
    assert lb.counters["node-0"].header_errors == 1


def test_delayed_header_makes_a_receiver_with_a_shorter_timeout_give_up() -> None:
    async def scenario() -> list[BaseException]:
        errors: list[BaseException] = []

        async def strict(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
            try:
                await read_header(reader, timeout=0.2)
            except ProxyProtocolError as exc:
                errors.append(exc)

        lb, nodes, port = await start("none", n=1, behaviour=strict, mode="tcp")
        lb.add_fault(Fault("delayed", params={"delay": 800}))
        _reader, writer = await connect(port)
        await wait_for(lambda: bool(errors), "the receiver to time out")
        writer.close()
        await stop(lb, nodes)
        return errors

    errors = run(scenario())
    assert "no complete PROXY header within 0.2 s" in str(errors[0])


def test_out_of_rotation_fault_takes_a_node_out_until_cleared() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        lb, nodes, port = await start("v1")
        lb.add_fault(Fault("out_of_rotation", node="node-2"))
        without = [(await exchange(port))[0] for _ in range(4)]
        rotation = lb.in_rotation()
        lb.clear_faults(node="node-2")
        back = [(await exchange(port))[0] for _ in range(3)]
        await stop(lb, nodes)
        return without, rotation, back

    without, rotation, back = run(scenario())
    assert "node-2" not in without and rotation == ["node-0", "node-1"]
    assert "node-2" in back


# --- specs and control ops ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "lag"}, "unknown fault kind"),
        ({"kind": "latency", "params": {"latncy": 5}}, "unknown attribute"),
        ({"kind": "bandwidth"}, "rate is required"),
        ({"kind": "bandwidth", "params": {"rate": 0}}, "must be > 0"),
        ({"kind": "latency", "params": {"latency": -1}}, "≥ 0"),
        ({"kind": "latency", "stream": "sideways"}, "stream"),
        ({"kind": "latency", "toxicity": 2}, "toxicity"),
        ({"kind": "malformed", "params": {"variant": "v9_nonsense"}}, "unknown variant"),
        ({"kind": "delayed", "params": {"delay": 5, "split": "yes"}}, "true or false"),
        ({"kind": "latency", "colour": "red"}, "unknown field"),
    ],
)
def test_a_bad_fault_spec_says_what_is_wrong(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        Fault.from_json(spec)


def test_fault_set_names_replaces_and_clears_like_toxiproxy() -> None:
    faults = FaultSet()
    first = faults.add(Fault("latency", params={"latency": 10}))
    assert first.name == "latency_downstream"
    faults.add(Fault("latency", params={"latency": 20}))  # same node, same name: replaced
    faults.add(Fault("latency", node="node-1", stream="upstream"))
    assert [f.params["latency"] for f in faults.for_node("node-0")] == [20]
    assert len(faults.for_node("node-1")) == 2
    assert [f.node for f in faults.remove(node="node-1")] == ["node-1"]
    assert len(faults) == 1


def test_plan_header_composes_header_faults() -> None:
    header = encode(1, "192.0.2.1", "198.51.100.2", 1000, 80)
    plan = plan_header(
        [Fault("duplicated"), Fault("delayed", params={"delay": 50})], header, ("192.0.2.1", 1000), ("198.51.100.2", 80)
    )
    assert plan is not None and plan.data == header * 2 and plan.delay == 0.05 and not plan.split
    assert plan_header([Fault("latency")], header, ("192.0.2.1", 1000), ("198.51.100.2", 80)) is None


def netd_plan() -> NetPlan:
    """A two-node plan that nothing listens for (the daemon's requests are tested without starting it)."""
    return NetPlan(
        run_id="t",
        seed=1,
        control_path="/nonexistent/netd.sock",
        nodes=[NodePlan("node-0", "127.2.0.1"), NodePlan("node-1", "127.2.0.2")],
        services=[ServicePlan("app", 30080, "None", 10800, True, False, [])],
        lb_listen=("127.1.0.1", 0),
        lb_source_ip="127.1.0.1",
        lb_service="app",
        lb={"mode": "nlb", "proxy_protocol": "v2", "source_ip_stickiness": True},
    )


def _daemon() -> NetDaemon:
    return NetDaemon(netd_plan())


def test_netd_fault_ops() -> None:
    daemon = _daemon()
    added = daemon.handle_request(
        {"op": "fault", "node": "node-1", "kind": "latency", "params": {"latency": 100, "jitter": 10}}
    )
    assert added == {
        "ok": True,
        "fault": {
            "name": "latency_downstream",
            "kind": "latency",
            "node": "node-1",
            "stream": "downstream",
            "toxicity": 1.0,
            "params": {"latency": 100, "jitter": 10},
        },
    }
    assert daemon.handle_request({"op": "fault", "node": "*", "kind": "out_of_rotation"})["ok"]
    assert daemon.lb.in_rotation() == []
    listed = daemon.handle_request({"op": "faults"})["faults"]
    assert [f["kind"] for f in listed] == ["latency", "out_of_rotation"]
    bad = daemon.handle_request({"op": "fault", "node": "node-9", "kind": "latency"})
    assert not bad["ok"] and "no node 'node-9'" in bad["error"]
    bad = daemon.handle_request({"op": "fault", "kind": "lag"})
    assert not bad["ok"] and "unknown fault kind" in bad["error"]
    cleared = daemon.handle_request({"op": "clear_faults", "node": "*"})
    assert [f["kind"] for f in cleared["removed"]] == ["out_of_rotation"]
    assert daemon.lb.in_rotation() == ["node-0", "node-1"]
    assert daemon.handle_request({"op": "clear_faults"})["removed"][0]["node"] == "node-1"
    snapshot = daemon.handle_request({"op": "snapshot"})
    assert snapshot["lb"]["mode"] == "nlb" and snapshot["lb"]["faults"] == []
