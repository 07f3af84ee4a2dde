"""Interoperability with the real peers on this machine, both ways:

- headers HAProxy sends (``send-proxy``, ``send-proxy-v2``, and ``proxy-v2-options crc32c,unique-id,authority``
  behind a TLS frontend) decode with our strict codec, with the addresses and TLVs HAProxy meant;
- headers our balancer sends are accepted by nginx (``$proxy_protocol_addr`` and ``_port`` equal what we sent)
  and by HAProxy (``accept-proxy``), and its header faults are refused by them the way each is documented to
  (nginx does not check a CRC32C; HAProxy does).

Each proxy runs as a real process on 127.3.x addresses with its config in a tmp dir and is killed at teardown.
A test is skipped, saying why, only when the binary is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.net.faults import Fault
from harness.net.lb import BalancerConfig, LoadBalancer, Target
from harness.net.proxyproto import ProxyHeader, TLVType, read_header
from tests.net.test_lb import run

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
OPENSSL = shutil.which("openssl")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")

CLIENT = "127.66.7.8"
LB_IP = "127.3.0.4"
SNI = "sticky.example"


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{proc.args!r} is not listening on {host}:{port}:\n{log.read_text(errors='replace')}")


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path
    dir: Path


def spawn(argv: list[str], directory: Path, listens: list[tuple[str, int]]) -> Proc:
    log = directory / "output.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=directory)
    try:
        for host, port in listens:
            wait_listening(host, port, proc, log)
    except BaseException:
        kill(proc)
        raise
    return Proc(proc, log, directory)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: the master and its workers
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# --- HAProxy sends, we decode ----------------------------------------------------------------------------------


@dataclass
class HAProxySender:
    ports: dict[str, int]  # frontend name -> port on 127.3.0.1
    node_port: int


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    if OPENSSL is None:
        pytest.skip("openssl is not installed: no certificate for HAProxy's TLS frontend")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={SNI}"]
    subprocess.run(
        [OPENSSL, *request, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    return both


@pytest.fixture
def haproxy_sender(tmp_path: Path, pem: Path) -> Iterator[HAProxySender]:
    assert HAPROXY is not None
    node_port = free_port("127.3.0.2")
    ports = {name: free_port("127.3.0.1") for name in ("v1", "v2", "v2opts")}
    config = f"""
global
    maxconn 200
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend v1
    bind 127.3.0.1:{ports["v1"]}
    default_backend v1
frontend v2
    bind 127.3.0.1:{ports["v2"]}
    default_backend v2
frontend v2opts
    bind 127.3.0.1:{ports["v2opts"]} ssl crt {pem}
    unique-id-format uid-%cp
    default_backend v2opts
backend v1
    server node 127.3.0.2:{node_port} send-proxy
backend v2
    server node 127.3.0.2:{node_port} send-proxy-v2
backend v2opts
    server node 127.3.0.2:{node_port} send-proxy-v2 proxy-v2-options crc32c,unique-id,authority,ssl
"""
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = spawn([HAPROXY, "-db", "-f", str(path)], tmp_path, [("127.3.0.1", p) for p in ports.values()])
    try:
        yield HAProxySender(ports, node_port)
    finally:
        kill(proc.proc)


async def through_haproxy(sender: HAProxySender, frontend: str) -> tuple[ProxyHeader, bytes, tuple[str, int]]:
    """Connect to a frontend, send a line, return the header our node decoded, the payload, and our address."""
    got: asyncio.Future[tuple[ProxyHeader, bytes]] = asyncio.get_running_loop().create_future()

    async def node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header, rest = await read_header(reader, timeout=5)
            rest = rest or await reader.read(100)
            # only our client's connection: HAProxy may still be retrying towards this port a connection of
            # the readiness probe (from 127.0.0.1), or a retry of its own would be a second connection
            if header.source is not None and header.source[0] == CLIENT and not got.done():
                got.set_result((header, rest))
        except Exception as exc:
            if not got.done():
                got.set_exception(exc)
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(node, "127.3.0.2", sender.node_port, reuse_address=True)
    context: ssl.SSLContext | None = None
    if frontend == "v2opts":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        "127.3.0.1",
        sender.ports[frontend],
        local_addr=(CLIENT, 0),
        ssl=context,
        server_hostname=SNI if context else None,
    )
    local = writer.get_extra_info("sockname")
    writer.write(b"hello node\n")
    await writer.drain()
    header, payload = await asyncio.wait_for(got, 5)
    await asyncio.wait_for(reader.read(10), 5)
    writer.close()
    server.close()
    return header, payload, (local[0], local[1])


@needs_haproxy
@pytest.mark.parametrize(("frontend", "version"), [("v1", 1), ("v2", 2)])
def test_haproxy_send_proxy_headers_decode(haproxy_sender: HAProxySender, frontend: str, version: int) -> None:
    header, payload, local = run(through_haproxy(haproxy_sender, frontend))
    assert header.version == version
    assert header.source == local  # our address and port as HAProxy saw them
    assert header.destination == ("127.3.0.1", haproxy_sender.ports[frontend])
    assert payload == b"hello node\n"


@needs_haproxy
def test_haproxy_v2_options_crc32c_unique_id_authority_decode(haproxy_sender: HAProxySender) -> None:
    header, payload, local = run(through_haproxy(haproxy_sender, "v2opts"))
    assert header.version == 2 and header.source == local
    assert header.crc32c_valid is True  # our CRC32C agrees with HAProxy's
    unique_id, authority, ssl_tlv = (header.tlv(t) for t in (TLVType.UNIQUE_ID, TLVType.AUTHORITY, TLVType.SSL))
    assert unique_id is not None and unique_id.value == f"uid-{local[1]}".encode()
    assert authority is not None and authority.value == SNI.encode()
    assert ssl_tlv is not None and ssl_tlv.to_dict()["ssl"]["client_flags"][0] == "SSL"
    assert {t["name"] for t in header.to_dict()["tlvs"]} >= {"CRC32C", "UNIQUE_ID", "AUTHORITY", "SSL"}
    assert payload == b"hello node\n"  # decrypted by HAProxy, after the header


# --- we send, nginx and HAProxy read --------------------------------------------------------------------------


@pytest.fixture
def nginx_receiver(tmp_path: Path) -> Iterator[tuple[int, Proc]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    port = free_port("127.3.0.3")
    body = "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port"
    temp = "".join(f"    {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi"))
    temp += "".join(f"    {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("uwsgi", "scgi"))
    config = f"""
worker_processes 1;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    server {{
        listen 127.3.0.3:{port} proxy_protocol;
        location / {{ return 200 "{body}\\n"; }}
    }}
}}
"""
    path = tmp_path / "nginx.conf"
    path.write_text(config)
    proc = spawn([NGINX, "-p", str(tmp_path), "-c", str(path)], tmp_path, [("127.3.0.3", port)])
    try:
        yield port, proc
    finally:
        kill(proc.proc)


@pytest.fixture
def haproxy_receiver(tmp_path: Path) -> Iterator[tuple[int, Proc]]:
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    port = free_port("127.3.0.5")
    config = f"""
global
    maxconn 200
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend entry
    bind 127.3.0.5:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src] %[src_port] %[dst] %[dst_port]\\n"
"""
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    proc = spawn([HAPROXY, "-db", "-f", str(path)], tmp_path, [("127.3.0.5", port)])
    try:
        yield port, proc
    finally:
        kill(proc.proc)


async def get_through_lb(
    version: str, host: str, port: int, faults: list[dict[str, Any]] | None = None
) -> tuple[str, tuple[str, int], tuple[str, int]]:
    """One HTTP GET through our balancer: (what came back, or how it ended), our address, the balancer's."""
    lb = LoadBalancer(BalancerConfig((LB_IP, 0), (Target("node-0", host, port),), LB_IP, version))
    await lb.start()
    for fault in faults or []:
        lb.add_fault(Fault.from_json(fault))
    try:
        reader, writer = await asyncio.open_connection(LB_IP, lb.address[1], local_addr=(CLIENT, 0))
        local = writer.get_extra_info("sockname")
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        await writer.drain()
        try:
            answer = (await asyncio.wait_for(reader.read(), 5)).decode()
        except ConnectionResetError:
            answer = "<reset>"
        writer.close()
        return answer or "<closed>", (local[0], local[1]), lb.address
    finally:
        await lb.close()


def body(answer: str) -> list[str]:
    return answer.split("\r\n\r\n", 1)[1].split()


@needs_nginx
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_nginx_reads_our_header(nginx_receiver: tuple[int, Proc], version: str) -> None:
    port, _ = nginx_receiver
    answer, (addr, sport), (lb_addr, lb_port) = run(get_through_lb(version, "127.3.0.3", port))
    assert answer.startswith("HTTP/1.1 200")
    assert body(answer) == [addr, str(sport), lb_addr, str(lb_port)]


@needs_nginx
def test_nginx_refuses_a_malformed_header_and_logs_broken_header(nginx_receiver: tuple[int, Proc]) -> None:
    port, proc = nginx_receiver
    fault = {"kind": "malformed", "params": {"variant": "v1_double_space"}}
    answer, _, _ = run(get_through_lb("v1", "127.3.0.3", port, [fault]))
    assert answer in ("<closed>", "<reset>")
    time.sleep(0.2)  # let nginx write its log line
    assert "broken header" in (proc.dir / "error.log").read_text(errors="replace")


@needs_nginx
def test_nginx_takes_a_duplicated_header_for_a_bad_request(nginx_receiver: tuple[int, Proc]) -> None:
    port, _ = nginx_receiver
    answer, _, _ = run(get_through_lb("v1", "127.3.0.3", port, [{"kind": "duplicated"}]))
    assert answer.startswith("HTTP/1.1 400")  # the second header is read as the request line


@needs_nginx
def test_nginx_does_not_check_the_crc32c(nginx_receiver: tuple[int, Proc]) -> None:
    port, _ = nginx_receiver
    fault = {"kind": "malformed", "params": {"variant": "v2_bad_crc32c"}}
    answer, (addr, sport), _ = run(get_through_lb("v2", "127.3.0.3", port, [fault]))
    assert answer.startswith("HTTP/1.1 200")  # lenient, as REFERENCE.md says: a check must follow nginx
    assert body(answer)[:2] == [addr, str(sport)]  # it used the header whose checksum HAProxy rejects


@needs_haproxy
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_haproxy_accept_proxy_reads_our_header(haproxy_receiver: tuple[int, Proc], version: str) -> None:
    port, _ = haproxy_receiver
    answer, (addr, sport), (lb_addr, lb_port) = run(get_through_lb(version, "127.3.0.5", port))
    assert answer.startswith("HTTP/1.1 200")
    assert body(answer) == [addr, str(sport), lb_addr, str(lb_port)]


@needs_haproxy
@pytest.mark.parametrize("variant", ["v1_double_space", "v2_bad_crc32c", "v2_bad_signature"])
def test_haproxy_refuses_our_malformed_headers(haproxy_receiver: tuple[int, Proc], variant: str) -> None:
    port, _ = haproxy_receiver
    fault = {"kind": "malformed", "params": {"variant": variant}}
    answer, _, _ = run(get_through_lb("v2" if variant.startswith("v2") else "v1", "127.3.0.5", port, [fault]))
    assert answer in ("<closed>", "<reset>")  # HAProxy drops the connection without a response
