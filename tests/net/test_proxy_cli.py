"""``harness proxy decode`` and ``harness proxy listen``: the tools for people whose nginx logs "broken header".

decode runs through click's CliRunner; listen runs as a real process that a test connects to."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from harness.cli_proxy import proxy
from harness.net.proxyproto import TLV, TLVType, encode_v1, encode_v2, malformed

SPEC_V2 = "0d0a0d0a000d0a515549540a 21 11 000c cb007107 0a000005 c822 7580"  # REFERENCE.md's example


def decode(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(proxy, ["decode", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_decode_hex_v2() -> None:
    code, out, _ = decode(SPEC_V2)
    assert code == 0
    data = json.loads(out)
    assert (data["version"], data["command"], data["family"]) == (2, "PROXY", "INET")
    assert data["source"] == {"address": "203.0.113.7", "port": 51234}
    assert data["destination"] == {"address": "10.0.0.5", "port": 30080}
    assert data["payload_bytes"] == 0


def test_decode_text_as_nginx_logs_it() -> None:
    code, out, _ = decode("--text", r"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1")
    assert code == 0
    data = json.loads(out)
    assert data["source"] == {"address": "192.168.0.1", "port": 56324}
    assert data["payload_bytes"] == len("GET / HTTP/1.1")


def test_decode_raw_bytes_on_stdin_with_tlvs_and_crc() -> None:
    header = encode_v2(
        "192.0.2.1", "198.51.100.2", 1000, 443, tlvs=[TLV(TLVType.AUTHORITY, b"example.com")], crc32c=True
    )
    code, out, _ = decode(stdin=header + b"payload")
    assert code == 0
    data = json.loads(out)
    assert [t["name"] for t in data["tlvs"]] == ["AUTHORITY", "CRC32C"]
    assert data["tlvs"][0]["text"] == "example.com"
    assert data["crc32c_valid"] is True and data["payload_bytes"] == len("payload")


def test_decode_bad_crc_prints_the_header_and_fails() -> None:
    code, out, err = decode(malformed("v2_bad_crc32c").hex())
    assert code == 1
    assert json.loads(out)["crc32c_valid"] is False
    assert "bad CRC32C" in err and "nginx does not check it" in err


@pytest.mark.parametrize("kind", ["v1_double_space", "v1_lowercase", "v1_port_out_of_range", "v2_bad_signature"])
def test_decode_malformed_exits_1_with_the_reason(kind: str) -> None:
    code, out, err = decode(malformed(kind).hex())
    assert code == 1 and out == ""
    assert err.startswith("malformed PROXY header: ")


def test_decode_a_plain_request_hints_at_the_missing_header() -> None:
    code, _, err = decode("--text", r"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 1
    assert "no PROXY header" in err and "hint: this is a plain request" in err


def test_decode_incomplete_header() -> None:
    code, _, err = decode(encode_v1("192.0.2.1", "198.51.100.2", 1, 2)[:20].hex())
    assert code == 1 and "incomplete header (20 bytes)" in err


def test_decode_expect_restricts_the_version() -> None:
    code, _, err = decode("--expect", "1", SPEC_V2)
    assert code == 1 and "expected a PROXY v1 line" in err


@pytest.mark.parametrize(("args", "stdin"), [(["zz"], None), ([], b""), (["--text"], b"x")])
def test_decode_usage_errors_exit_2(args: list[str], stdin: bytes | None) -> None:
    code, _, _ = decode(*args, stdin=stdin)
    assert code == 2


# --- listen ------------------------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[str], int]]:
    argv = [sys.executable, "-c", "from harness.cli_proxy import proxy; proxy()"]
    argv += ["listen", "127.3.1.1:0", "--count", "3", "--timeout", "0.5", "--reply", "HTTP/1.0 200 OK\\r\\n\\r\\n"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("listening on 127.3.1.1:"), line
        yield proc, int(line.rsplit(":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def send(port: int, data: bytes, *, bytewise: bool = False) -> bytes:
    with socket.create_connection(("127.3.1.1", port), timeout=5) as sock:
        if bytewise:
            for i in range(len(data)):
                sock.sendall(data[i : i + 1])
                time.sleep(0.002)
        else:
            sock.sendall(data)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


def test_listen_prints_each_header_and_flags_the_bad_ones(listener: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = listener
    good = send(port, encode_v1("192.0.2.1", "198.51.100.2", 1234, 80) + b"GET / HTTP/1.0\r\n\r\n")
    byte_by_byte = send(port, encode_v2("2001:db8::1", "2001:db8::2", 5, 6), bytewise=True)
    send(port, b"PROXY TCP4 192.0.2.1 ")  # a header that never finishes: the listener times out
    out, _ = proc.communicate(timeout=10)
    records = [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 1  # one of the three was not a valid header
    assert good.startswith(b"HTTP/1.0 200") and byte_by_byte.startswith(b"HTTP/1.0 200")
    assert records[0]["header"]["source"] == {"address": "192.0.2.1", "port": 1234}
    assert records[0]["payload_preview"].startswith("GET /")
    assert records[1]["header"]["family"] == "INET6"
    assert "no complete PROXY header within 0.5 s" in records[2]["error"]


def test_listen_usage_error_on_a_bad_address() -> None:
    result = CliRunner().invoke(proxy, ["listen", "127.0.0.1:notaport"])
    assert result.exit_code == 2
