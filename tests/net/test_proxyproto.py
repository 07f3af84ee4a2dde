"""The PROXY protocol codec against the rules and examples of REFERENCE.md ("PROXY protocol"), which follow
haproxy's doc/proxy-protocol.txt."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.net.proxyproto import (
    INCOMPLETE_KINDS,
    MALFORMED_KINDS,
    TLV,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    Command,
    HeaderReader,
    IncompleteHeader,
    ProxyHeader,
    ProxyProtocolError,
    TLVType,
    crc32c,
    decode,
    encode,
    encode_header,
    encode_v1,
    encode_v1_unknown,
    encode_v2,
    encode_v2_local,
    encode_v2_unix,
    malformed,
    read_header,
)

SIG = V2_SIGNATURE
V2_IPV4_VECTOR = bytes.fromhex("0d0a0d0a000d0a515549540a 21 11 000c cb007107 0a000005 c822 7580")
V2_LOCAL_VECTOR = bytes.fromhex("0d0a0d0a000d0a515549540a 20 00 0000")
V2_INET = SIG + b"\x21\x11"  # PROXY, TCP over IPv4, length still to come
FFFF6 = b"ffff:" * 7 + b"ffff"
V1_WORST_CASE = b"PROXY UNKNOWN " + FFFF6 + b" " + FFFF6 + b" 65535 65535\r\n"  # the spec's 107 bytes
ADDR4 = bytes.fromhex("cb007107 0a000005 c822 7580")


def v2(ver_cmd: int, fam: int, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return SIG + bytes([ver_cmd, fam]) + size.to_bytes(2, "big") + body


def tlv_bytes(type_: int, value: bytes, length: int | None = None) -> bytes:
    return bytes([type_]) + (len(value) if length is None else length).to_bytes(2, "big") + value


def feed_bytewise(data: bytes) -> tuple[ProxyHeader | None, HeaderReader, int]:
    """Feed one byte at a time; the header, the reader and how many bytes it took (-1: never complete)."""
    reader = HeaderReader()
    for i in range(len(data)):
        header = reader.feed(data[i : i + 1])
        if header is not None:
            return header, reader, i + 1
    return None, reader, -1


def first_error_at(data: bytes) -> int:
    """Index of the byte on which a byte-at-a-time HeaderReader raises (-1: it never does)."""
    reader = HeaderReader()
    for i in range(len(data)):
        try:
            reader.feed(data[i : i + 1])
        except ProxyProtocolError:
            return i
    return -1


# --- examples from the spec and REFERENCE.md -----------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            (1, Command.PROXY, "TCP4", "STREAM", ("192.168.0.1", 56324), ("192.168.0.11", 443)),
            id="spec-v1-example",
        ),
        pytest.param(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 1234\r\n",
            (1, Command.PROXY, "TCP4", "STREAM", ("192.168.0.1", 56324), ("192.168.0.11", 1234)),
            id="ingress-nginx-e2e",
        ),
        pytest.param(
            V2_IPV4_VECTOR,
            (2, Command.PROXY, "INET", "STREAM", ("203.0.113.7", 51234), ("10.0.0.5", 30080)),
            id="v2-ipv4-vector",
        ),
        pytest.param(V2_LOCAL_VECTOR, (2, Command.LOCAL, "UNSPEC", "UNSPEC", None, None), id="v2-local-vector"),
        pytest.param(b"PROXY UNKNOWN\r\n", (1, Command.LOCAL, "UNKNOWN", "UNSPEC", None, None), id="v1-unknown"),
        pytest.param(
            V1_WORST_CASE,
            (1, Command.LOCAL, "UNKNOWN", "UNSPEC", None, None),
            id="v1-unknown-107-bytes",
        ),
        pytest.param(
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
            (1, Command.PROXY, "TCP4", "STREAM", ("255.255.255.255", 65535), ("255.255.255.255", 65535)),
            id="v1-tcp4-longest",
        ),
        pytest.param(
            b"PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n",
            (1, Command.PROXY, "TCP4", "STREAM", ("0.0.0.0", 0), ("10.0.0.1", 0)),
            id="v1-zeros-are-not-leading-zeros",
        ),
        pytest.param(
            b"PROXY TCP6 " + b"FFFF:" * 7 + b"ffff " + b"2001:DB8:0:0:0:0:0:1 65535 65535\r\n",
            (1, Command.PROXY, "TCP6", "STREAM", ("ffff:" * 7 + "ffff", 65535), ("2001:db8::1", 65535)),
            id="v1-tcp6-printed-canonical",
        ),
    ],
)
def test_decodes_reference_examples(wire: bytes, expected: tuple[object, ...]) -> None:
    header = decode(wire + b"GET / HTTP/1.1\r\n")
    got = (header.version, header.command, header.family, header.transport, header.source, header.destination)
    assert got == expected
    assert header.length == len(wire)
    if wire.startswith(b"PROXY UNKNOWN "):
        assert len(wire) == V1_MAX_LENGTH


# --- malformed cases from REFERENCE.md: each one its own test -------------------------------------------

V1_OK = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443"

MALFORMED = [
    pytest.param(V1_OK + b"\r\nGET", None, id="control-valid"),
    pytest.param(V1_OK + b"GET / HTTP/1.1\r\n", "destination port b'443GET'", id="missing-crlf-then-payload"),
    pytest.param(V1_OK + b"\n", "bare LF", id="bare-lf"),
    pytest.param(V1_OK + b"\rX", "bare CR", id="bare-cr"),
    pytest.param(b"PROXY TCP4 192.168.0.1 192.168.0.11  56324 443\r\n", "two spaces before source port", id="2sp"),
    pytest.param(b"PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "two spaces after PROXY", id="2sp-proto"),
    pytest.param(V1_OK + b" \r\n", "space after the destination port", id="trailing-space"),
    pytest.param(b"proxy TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "no PROXY header", id="lowercase-proxy"),
    pytest.param(b"PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n", "unknown protocol", id="lowercase-tcp4"),
    pytest.param(b"PROXY TCP5 192.168.0.1 192.168.0.11 56324 443\r\n", "unknown protocol b'TCP5'", id="TCP5"),
    pytest.param(b"PROXY UNKNOWNX\r\n", "unknown protocol", id="UNKNOWN-glued"),
    pytest.param(b"PROXY TCP4 ::1 ::1 56324 443\r\n", "TCP4 with an IPv6 source", id="tcp4-with-ipv6"),
    pytest.param(b"PROXY TCP6 192.168.0.1 192.168.0.11 1 2\r\n", "TCP6 with a non-IPv6 source", id="tcp6-with-v4"),
    pytest.param(b"PROXY TCP4 192.168.0.01 192.168.0.11 1 2\r\n", "leading zero in source address", id="lz-addr"),
    pytest.param(b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n", "leading zero in source port", id="lz-port"),
    pytest.param(b"PROXY TCP4 192.168.0.1 192.168.0.11 1 65536\r\n", "destination port 65536 out of range", id="65536"),
    pytest.param(b"PROXY TCP4 192.168.0.1 192.168.0.11 +1 2\r\n", "not a decimal number", id="port-sign"),
    pytest.param(b"PROXY TCP4 192.168.0.256 192.168.0.11 1 2\r\n", "octet 256 out of range", id="octet-256"),
    pytest.param(b"PROXY TCP4 192.168.0 192.168.0.11 1 2\r\n", "not four dot-separated", id="three-octets"),
    pytest.param(b"PROXY TCP6 1::2::3 ::1 1 2\r\n", "not an IPv6 address", id="two-double-colons"),
    pytest.param(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "not an IPv6 address", id="ipv6-zone"),
    pytest.param(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n", "5 fields, expected 6", id="5-fields"),
    pytest.param(V1_OK + b" 80\r\n", "7 fields, expected 6", id="7-fields"),
    pytest.param(V1_WORST_CASE[:-2] + b"5\r\n", "no CRLF within the first 107", id="v1-108-bytes"),
    pytest.param(V2_IPV4_VECTOR[:7] + b"\x50" + V2_IPV4_VECTOR[8:], "signature byte 8", id="flipped-signature"),
    pytest.param(v2(0x11, 0x11, ADDR4), "version 1 in a v2 header", id="v2-version-1"),
    pytest.param(v2(0x31, 0x11, ADDR4), "version 3 in a v2 header", id="v2-version-3"),
    pytest.param(v2(0x22, 0x11, ADDR4), "unknown command 0x2", id="v2-command-2"),
    pytest.param(v2(0x21, 0x41, ADDR4), "unknown address family 0x4", id="v2-family-4"),
    pytest.param(v2(0x21, 0x13, ADDR4), "unknown transport 0x3", id="v2-transport-3"),
    pytest.param(v2(0x21, 0x10, ADDR4), "not a combination the spec defines", id="v2-inet-unspec"),
    pytest.param(v2(0x21, 0x01, b""), "not a combination the spec defines", id="v2-unspec-stream"),
    pytest.param(v2(0x21, 0x11, ADDR4[:8]), "length 8 is shorter than the INET address block", id="v2-short-len"),
    pytest.param(v2(0x20, 0x21, ADDR4), "length 12 is shorter than the INET6", id="v2-local-short-len"),
    pytest.param(
        v2(0x21, 0x11, ADDR4 + tlv_bytes(0x02, b"example.com", 20)), "declares 20 bytes, only 11", id="tlv-overrun"
    ),
    pytest.param(v2(0x21, 0x11, ADDR4 + b"\x04\x00"), "2 stray byte(s)", id="tlv-header-cut"),
    pytest.param(
        v2(0x21, 0x11, ADDR4 + tlv_bytes(0x03, bytes.fromhex("deadbeef"))), "bad CRC32C 0xDEADBEEF", id="bad-crc"
    ),
    pytest.param(v2(0x21, 0x11, ADDR4 + tlv_bytes(0x03, b"\0\0")), "CRC32C TLV of 2 bytes", id="crc-size"),
    pytest.param(v2(0x21, 0x11, ADDR4 + tlv_bytes(0x05, b"u" * 129)), "UNIQUE_ID TLV of 129", id="unique-id-129"),
    pytest.param(v2(0x21, 0x11, ADDR4 + tlv_bytes(0x20, b"\x01\0\0")), "SSL TLV of 3 bytes", id="ssl-short"),
    pytest.param(
        v2(0x21, 0x11, ADDR4 + tlv_bytes(0x20, b"\x01\0\0\0\0" + tlv_bytes(0x21, b"TLSv1.3", 9))),
        "SSL sub-TLV 0x21 (SSL_VERSION) at offset 5 declares 9 bytes, only 7 left",
        id="ssl-sub-tlv-overrun",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "no PROXY header", id="no-header"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "no PROXY header", id="tls-hello"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_rejects_malformed(data: bytes, message: str | None) -> None:
    if message is None:  # the control: the same shape, valid, decodes
        assert decode(data).length == len(data) - 3
        return
    with pytest.raises(ProxyProtocolError, match=re.escape(message)) as info:
        decode(data)
    assert not isinstance(info.value, IncompleteHeader)
    assert isinstance(info.value, HarnessError)
    with pytest.raises(ProxyProtocolError):
        feed_bytewise(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(V1_OK, id="v1-missing-crlf"),
        pytest.param(V1_OK + b"\r", id="v1-cr-without-lf-yet"),
        pytest.param(V1_OK[:20], id="v1-truncated"),
        pytest.param(b"PROX", id="v1-prefix-only"),
        pytest.param(V2_IPV4_VECTOR[:10], id="v2-truncated-signature"),
        pytest.param(V2_IPV4_VECTOR[:15], id="v2-truncated-fixed-part"),
        pytest.param(V2_IPV4_VECTOR[:-1], id="v2-truncated-address"),
        pytest.param(b"", id="nothing-yet"),
    ],
)
def test_truncated_header_is_incomplete_not_invalid(data: bytes) -> None:
    with pytest.raises(IncompleteHeader):
        decode(data)
    assert feed_bytewise(data)[0] is None


def test_a_bad_crc_can_be_reported_instead_of_raised() -> None:
    data = v2(0x21, 0x11, ADDR4 + tlv_bytes(0x03, bytes.fromhex("deadbeef")))
    assert decode(data, verify_crc32c=False).crc32c_valid is False
    assert HeaderReader(verify_crc32c=False).feed(data) is not None


def test_two_crc_tlvs_are_rejected() -> None:
    data = v2(0x21, 0x11, ADDR4 + tlv_bytes(0x03, b"\0" * 4) * 2)
    with pytest.raises(ProxyProtocolError, match="more than one CRC32C"):
        decode(data, verify_crc32c=False)


# --- failing as early as the bytes allow ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "index"),
    [
        pytest.param(b"GET / HTTP/1.1\r\n", 0, id="first-byte"),
        pytest.param(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 9, id="protocol-word"),
        pytest.param(b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", 18, id="leading-zero"),
        pytest.param(b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 19, id="double-space"),
        pytest.param(b"PROXY TCP4 ::1 ::1 1 2\r\n", 11, id="family-mismatch"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 33, id="port-range"),
        pytest.param(b"PROXY UNKNOWN " + b"f" * 200, 105, id="no-crlf-in-107"),
        pytest.param(V2_IPV4_VECTOR[:7] + b"q" + V2_IPV4_VECTOR[8:], 7, id="signature"),
        pytest.param(v2(0x11, 0x11, ADDR4), 12, id="v2-version"),
        pytest.param(v2(0x21, 0x41, ADDR4), 13, id="v2-family"),
        pytest.param(v2(0x21, 0x11, ADDR4[:4]), 15, id="v2-length"),
        pytest.param(V2_IPV4_VECTOR, -1, id="control-valid-v2"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", -1, id="control-valid-v1"),
    ],
)
def test_reader_raises_on_the_first_byte_that_rules_a_header_out(data: bytes, index: int) -> None:
    assert first_error_at(data) == index


def test_reader_keeps_raising_after_an_error() -> None:
    reader = HeaderReader()
    with pytest.raises(ProxyProtocolError):
        reader.feed(b"X")
    with pytest.raises(ProxyProtocolError):
        reader.feed(b"PROXY UNKNOWN\r\n")


def test_expected_version_is_enforced() -> None:
    v1 = encode_v1("192.0.2.1", "198.51.100.1", 1, 2)
    v2_ = encode_v2("192.0.2.1", "198.51.100.1", 1, 2)
    assert decode(v1, expect=1).version == 1
    assert decode(v2_, expect=2).version == 2
    with pytest.raises(ProxyProtocolError, match="expected a PROXY v2 header"):
        decode(v1, expect=2)
    with pytest.raises(ProxyProtocolError, match="expected a PROXY v1 line"):
        HeaderReader(expect=1).feed(v2_[:1])
    with pytest.raises(ValueError):
        HeaderReader(expect=3)


# --- byte at a time, and with payload attached ----------------------------------------------------------

VALID_HEADERS = [
    pytest.param(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", id="v1-tcp4"),
    pytest.param(encode_v1("2001:db8::1", "2001:db8::2", 1, 2), id="v1-tcp6"),
    pytest.param(b"PROXY UNKNOWN whatever 1 2\r\n", id="v1-unknown"),
    pytest.param(V2_IPV4_VECTOR, id="v2-ipv4"),
    pytest.param(V2_LOCAL_VECTOR, id="v2-local"),
    pytest.param(
        encode_v2(
            "2001:db8::1",
            "2001:db8::2",
            1,
            2,
            tlvs=[TLV(TLVType.AUTHORITY, b"example.com"), TLV(TLVType.UNIQUE_ID, b"u" * 128)],
            crc32c=True,
        ),
        id="v2-ipv6-tlvs-crc",
    ),
    pytest.param(encode_v2_unix("/run/a.sock", "/run/b.sock"), id="v2-unix"),
]


@pytest.mark.parametrize("wire", VALID_HEADERS)
def test_byte_at_a_time_gives_the_same_header(wire: bytes) -> None:
    header, reader, used = feed_bytewise(wire)
    assert header == decode(wire)
    assert used == len(wire)
    assert reader.rest == b""


@pytest.mark.parametrize("wire", VALID_HEADERS)
def test_header_and_payload_in_one_chunk(wire: bytes) -> None:
    payload = b"\r\nGET / HTTP/1.1\r\n\r\n\x00\x0d\x0a"
    reader = HeaderReader()
    header = reader.feed(wire + payload)
    assert header == decode(wire)
    assert reader.rest == payload
    assert reader.feed(b"more") is header
    assert reader.rest == payload + b"more"


def test_a_duplicate_header_is_payload_after_the_first() -> None:
    first = encode(1, "192.0.2.1", "198.51.100.1", 1000, 80)
    second = encode(1, "203.0.113.9", "198.51.100.1", 2000, 80)
    header = decode(first + second)
    assert header.source == ("192.0.2.1", 1000)
    assert (first + second)[header.length :] == second


# --- the asyncio helper ---------------------------------------------------------------------------------


def run_read_header(chunks: list[bytes], *, eof: bool, timeout: float = 3.0) -> tuple[ProxyHeader, bytes]:
    async def main() -> tuple[ProxyHeader, bytes]:
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        if eof:
            reader.feed_eof()
        return await read_header(reader, timeout=timeout)

    return asyncio.run(main())


def test_read_header_returns_header_and_payload() -> None:
    header, rest = run_read_header([V2_IPV4_VECTOR[:5], V2_IPV4_VECTOR[5:] + b"hello"], eof=False)
    assert header.source == ("203.0.113.7", 51234)
    assert rest == b"hello"


def test_read_header_across_separate_arrivals() -> None:
    wire = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"

    async def main() -> tuple[ProxyHeader, bytes]:
        reader = asyncio.StreamReader()

        async def trickle() -> None:
            for i in range(len(wire)):
                reader.feed_data(wire[i : i + 1])
                await asyncio.sleep(0)
            reader.feed_data(b"x")

        task = asyncio.create_task(trickle())
        result = await read_header(reader)
        await task
        return result

    header, _ = asyncio.run(main())
    assert header.destination == ("192.168.0.11", 443)


def test_read_header_times_out_on_a_header_that_never_finishes() -> None:
    with pytest.raises(ProxyProtocolError, match=r"no complete PROXY header within 0.2 s \(20 bytes"):
        run_read_header([b"PROXY TCP4 192.168.0"], eof=False, timeout=0.2)


def test_read_header_rejects_eof_before_the_header_is_complete() -> None:
    with pytest.raises(ProxyProtocolError, match="connection closed after 20 bytes"):
        run_read_header([b"PROXY TCP4 192.168.0"], eof=True)


def test_read_header_rejects_malformed_input_at_once() -> None:
    with pytest.raises(ProxyProtocolError, match="no PROXY header"):
        run_read_header([b"GET / HTTP/1.1\r\n"], eof=False)


# --- TLVs -----------------------------------------------------------------------------------------------

SSL_VALUE = (
    b"\x07\x00\x00\x00\x00"
    + tlv_bytes(0x21, b"TLSv1.3")
    + tlv_bytes(0x22, b"client.example")
    + tlv_bytes(0x23, b"TLS_AES_128_GCM_SHA256")
    + tlv_bytes(0x24, b"RSA-SHA256")
    + tlv_bytes(0x25, b"RSA2048")
)


@pytest.mark.parametrize(
    ("tlv", "name", "shown"),
    [
        pytest.param(TLV(0x01, b"h2"), "ALPN", {"text": "h2"}, id="alpn"),
        pytest.param(TLV(0x02, "bücher.example".encode()), "AUTHORITY", {"text": "bücher.example"}, id="authority"),
        pytest.param(TLV(0x04, b"\0\0\0"), "NOOP", {"hex": "000000"}, id="noop"),
        pytest.param(TLV(0x05, b""), "UNIQUE_ID", {"length": 0}, id="unique-id-empty"),
        pytest.param(TLV(0x05, bytes(range(128))), "UNIQUE_ID", {"length": 128}, id="unique-id-128"),
        pytest.param(TLV(0x30, b"blue"), "NETNS", {"text": "blue"}, id="netns"),
        pytest.param(
            TLV(0xEA, b"\x01vpce-08d2bf15fac5001c9"),
            "AWS",
            {"aws_subtype": "VPCE_ID", "vpce_id": "vpce-08d2bf15fac5001c9"},
            id="aws-vpce",
        ),
        pytest.param(TLV(0xE5, b"\xff"), "CUSTOM_0xE5", {"hex": "ff"}, id="custom"),
        pytest.param(TLV(0xF3, b"x"), "UNKNOWN_0xF3", {"hex": "78"}, id="experiment"),
        pytest.param(TLV(0x99, b""), "UNKNOWN_0x99", {"length": 0}, id="unknown"),
    ],
)
def test_each_tlv_type_round_trips(tlv: TLV, name: str, shown: dict[str, object]) -> None:
    header = decode(encode_v2("192.0.2.1", "198.51.100.1", 1, 2, tlvs=[tlv]))
    assert header.tlvs == (tlv,)
    assert header.tlv(tlv.type) == tlv
    assert tlv.name == name
    as_dict = tlv.to_dict()
    assert as_dict["name"] == name
    assert shown.items() <= as_dict.items()


def test_ssl_tlv_and_its_sub_tlvs() -> None:
    header = decode(encode_v2("192.0.2.1", "198.51.100.1", 1, 2, tlvs=[TLV(TLVType.SSL, SSL_VALUE)]))
    ssl = header.tlvs[0].to_dict()["ssl"]
    assert ssl["client_flags"] == ["SSL", "CERT_CONN", "CERT_SESS"]
    assert ssl["verify"] == 0
    subs = {sub["name"]: sub["text"] for sub in ssl["sub_tlvs"]}
    assert subs == {
        "SSL_VERSION": "TLSv1.3",
        "SSL_CN": "client.example",
        "SSL_CIPHER": "TLS_AES_128_GCM_SHA256",
        "SSL_SIG_ALG": "RSA-SHA256",
        "SSL_KEY_ALG": "RSA2048",
    }


def test_tlv_order_is_preserved() -> None:
    tlvs = [TLV(0x04, b""), TLV(0xEA, b"\x01vpce-1"), TLV(0x01, b"h2"), TLV(0x04, b"x"), TLV(0x02, b"a")]
    assert list(decode(encode_v2("::1", "::2", 1, 2, tlvs=tlvs)).tlvs) == tlvs


def test_crc32c_check_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # RFC 3720 appendix B.4 (iSCSI)
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283


def test_crc32c_tlv_covers_the_whole_header() -> None:
    wire = encode_v2("192.0.2.1", "198.51.100.1", 1, 2, tlvs=[TLV(0x02, b"example.com")], crc32c=True)
    header = decode(wire)
    assert header.crc32c_valid is True
    assert header.tlvs[-1].name == "CRC32C"
    assert int.from_bytes(wire[-4:], "big") == crc32c(wire[:-4] + b"\0\0\0\0")
    assert header.to_dict()["tlvs"][-1]["crc32c"] == f"0x{crc32c(wire[:-4] + bytes(4)):08X}"
    crc_type_at = len(wire) - 7
    for i in range(len(wire)):  # any single flipped bit is caught...
        if i == crc_type_at:
            continue  # ...except one that turns the CRC32C TLV into another type: nothing is left to check
        broken = bytearray(wire)
        broken[i] ^= 0x10
        with pytest.raises(ProxyProtocolError):
            decode(bytes(broken))


def test_without_a_crc_tlv_validity_is_unknown() -> None:
    assert decode(V2_IPV4_VECTOR).crc32c_valid is None


def test_local_skips_its_address_block_and_reads_tlvs_after_it() -> None:
    wire = v2(0x20, 0x11, ADDR4 + tlv_bytes(0x05, b"id-1"))
    header = decode(wire)
    assert (header.command, header.source, header.destination) == (Command.LOCAL, None, None)
    assert header.tlvs == (TLV(0x05, b"id-1"),)
    assert decode(encode_v2_local([TLV(0x05, b"id-2")], crc32c=True)).crc32c_valid is True


def test_proxy_over_unspec_ignores_addresses() -> None:
    header = decode(v2(0x21, 0x00, tlv_bytes(0x04, b"")))
    assert (header.family, header.source, header.tlvs) == ("UNSPEC", None, (TLV(0x04, b""),))


def test_udp_and_unix_families() -> None:
    udp = decode(encode_v2("2001:db8::1", "2001:db8::2", 53, 5353, transport="DGRAM"))
    assert (udp.family, udp.transport, udp.source) == ("INET6", "DGRAM", ("2001:db8::1", 53))
    unix = decode(encode_v2_unix("/run/a.sock", "/tmp/b", transport="DGRAM"))
    assert (unix.family, unix.transport) == ("UNIX", "DGRAM")
    assert (unix.source, unix.destination, unix.length) == (("/run/a.sock", 0), ("/tmp/b", 0), 16 + 216)


def test_to_dict_is_json() -> None:
    header = decode(
        encode_v2("192.0.2.1", "198.51.100.1", 1, 2, tlvs=[TLV(TLVType.SSL, SSL_VALUE), TLV(0x99, b"\xff")])
    )
    data = json.loads(json.dumps(header.to_dict()))
    assert data["source"] == {"address": "192.0.2.1", "port": 1}
    assert data["command"] == "PROXY"
    assert [t["name"] for t in data["tlvs"]] == ["SSL", "UNKNOWN_0x99"]
    broken = TLV(TLVType.SSL, b"\x01").to_dict()
    assert "SSL TLV of 1 bytes" in broken["error"]


# --- encoders -------------------------------------------------------------------------------------------


def test_encoders_emit_the_reference_bytes() -> None:
    assert encode_v1("192.168.0.1", "192.168.0.11", 56324, 443) == (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    )
    assert encode_v2("203.0.113.7", "10.0.0.5", 51234, 30080) == V2_IPV4_VECTOR
    assert encode(2, "203.0.113.7", "10.0.0.5", 51234, 30080) == V2_IPV4_VECTOR
    assert encode_v2_local() == V2_LOCAL_VECTOR
    assert encode_v1_unknown() == b"PROXY UNKNOWN\r\n"
    assert encode_v1("2001:DB8:0::1", "::ffff:0:1", 1, 2).startswith(b"PROXY TCP6 2001:db8::1 ")
    assert encode_v1("fe80::1%eth0", "fe80::2", 1, 2) == b"PROXY TCP6 fe80::1 fe80::2 1 2\r\n"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: encode_v1("192.0.2.1", "::1", 1, 2), id="v1-mixed-families"),
        pytest.param(lambda: encode_v2("::1", "192.0.2.1", 1, 2), id="v2-mixed-families"),
        pytest.param(lambda: encode_v1("192.0.2.1", "192.0.2.2", 65536, 2), id="port-65536"),
        pytest.param(lambda: encode_v1("192.0.2.1", "192.0.2.2", -1, 2), id="port-negative"),
        pytest.param(lambda: encode_v1("192.0.2.01", "192.0.2.2", 1, 2), id="not-an-address"),
        pytest.param(lambda: encode(3, "192.0.2.1", "192.0.2.2", 1, 2), id="version-3"),
        pytest.param(lambda: encode_v2("192.0.2.1", "192.0.2.2", 1, 2, tlvs=[TLV(5, b"u" * 129)]), id="unique-id-129"),
        pytest.param(lambda: encode_v2("192.0.2.1", "192.0.2.2", 1, 2, tlvs=[TLV(0x20, b"")]), id="ssl-empty"),
        pytest.param(
            lambda: encode_v2("192.0.2.1", "192.0.2.2", 1, 2, tlvs=[TLV(3, b"\0" * 4)], crc32c=True), id="crc-twice"
        ),
        pytest.param(lambda: encode_v2("::1", "::2", 1, 2, tlvs=[TLV(4, b"x" * 65500)]), id="too-long"),
        pytest.param(lambda: encode_v2("::1", "::2", 1, 2, transport="UNSPEC"), id="transport"),
        pytest.param(lambda: encode_v2_unix("x" * 109, "y"), id="unix-path-too-long"),
        pytest.param(lambda: TLV(256, b""), id="tlv-type-256"),
        pytest.param(lambda: malformed("nonsense"), id="unknown-fault"),
        pytest.param(lambda: malformed("v1_leading_zero_address", "::1", "::2"), id="fault-needs-ipv4"),
    ],
)
def test_encoders_refuse_what_they_cannot_encode_validly(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError):
        call()


# --- fault encoders -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "family"),
    [
        pytest.param(kind, family, id=f"{kind}-{family}")
        for kind in sorted(MALFORMED_KINDS)
        for family in ("ipv4", "ipv6")
        if (kind, family) != ("v1_leading_zero_address", "ipv6")  # IPv6 groups may have leading zeros
    ],
)
def test_every_fault_is_rejected(kind: str, family: str) -> None:
    src, dst = ("192.0.2.10", "198.51.100.20") if family == "ipv4" else ("2001:db8::10", "2001:db8::20")
    data = malformed(kind, src, dst)
    with pytest.raises(ProxyProtocolError) as info:
        decode(data)
    assert isinstance(info.value, IncompleteHeader) == (kind in INCOMPLETE_KINDS)


def test_missing_crlf_fails_once_payload_follows() -> None:
    with pytest.raises(ProxyProtocolError, match="destination port b'443GET'"):
        decode(malformed("v1_no_crlf") + b"GET / HTTP/1.1\r\n")


# --- properties -----------------------------------------------------------------------------------------


def examples(n: int) -> settings:
    """Hypothesis settings without its timing checks: these tests must not be timed assertions."""
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


ports = st.integers(0, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
address_pairs = st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6))


def ssl_values() -> st.SearchStrategy[bytes]:
    sub = st.builds(lambda t, v: tlv_bytes(t, v), st.integers(0x21, 0x25), st.binary(max_size=20))
    return st.builds(
        lambda c, v, subs: bytes([c]) + v.to_bytes(4, "big") + b"".join(subs),
        st.integers(0, 7),
        st.integers(0, 2**32 - 1),
        st.lists(sub, max_size=4),
    )


tlvs = st.lists(
    st.one_of(
        st.builds(TLV, st.sampled_from([0x01, 0x02, 0x04, 0x30, 0xE0, 0xEA, 0xF8]), st.binary(max_size=40)),
        st.builds(TLV, st.just(0x05), st.binary(max_size=128)),
        st.builds(TLV, st.just(0x20), ssl_values()),
    ),
    max_size=5,
)


@examples(150)
@given(address_pairs, ports, ports)
def test_v1_encode_decode_is_identity(addrs: tuple[str, str], sport: int, dport: int) -> None:
    wire = encode_v1(addrs[0], addrs[1], sport, dport)
    header = decode(wire)
    family = "TCP4" if ipaddress.ip_address(addrs[0]).version == 4 else "TCP6"
    assert header == ProxyHeader(
        1, Command.PROXY, family, "STREAM", (addrs[0], sport), (addrs[1], dport), (), None, len(wire)
    )
    assert encode_header(header) == wire
    assert len(wire) <= V1_MAX_LENGTH


@examples(150)
@given(address_pairs, ports, ports, tlvs, st.booleans(), st.sampled_from(["STREAM", "DGRAM"]))
def test_v2_encode_decode_is_identity(
    addrs: tuple[str, str], sport: int, dport: int, tlv_list: list[TLV], crc: bool, transport: str
) -> None:
    wire = encode_v2(addrs[0], addrs[1], sport, dport, tlvs=tlv_list, crc32c=crc, transport=transport)
    header = decode(wire)
    assert (header.source, header.destination, header.transport) == ((addrs[0], sport), (addrs[1], dport), transport)
    assert list(header.tlvs[: len(tlv_list)]) == tlv_list
    assert header.crc32c_valid is (True if crc else None)
    assert header.length == len(wire)
    assert encode_header(header) == wire


unix_paths = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=30)


@st.composite
def v2_headers(draw: st.DrawFn) -> ProxyHeader:
    kind = draw(st.sampled_from(["INET", "INET6", "UNIX", "UNSPEC", "LOCAL"]))
    transport = draw(st.sampled_from(["STREAM", "DGRAM"]))
    command = Command.PROXY
    source = destination = None
    if kind in ("INET", "INET6"):
        make = ipv4 if kind == "INET" else ipv6
        source, destination = (draw(make), draw(ports)), (draw(make), draw(ports))
    elif kind == "UNIX":
        source, destination = (draw(unix_paths), 0), (draw(unix_paths), 0)
    else:
        command = Command.LOCAL if kind == "LOCAL" else Command.PROXY
        kind, transport = "UNSPEC", "UNSPEC"
    tlv_list = draw(tlvs)
    crc_valid = None
    if draw(st.booleans()):
        tlv_list.insert(draw(st.integers(0, len(tlv_list))), TLV(TLVType.CRC32C, b"\0\0\0\0"))
        crc_valid = True
    return ProxyHeader(2, command, kind, transport, source, destination, tuple(tlv_list), crc_valid, 0)


@examples(150)
@given(v2_headers())
def test_any_v2_header_survives_encode_and_decode(header: ProxyHeader) -> None:
    wire = encode_header(header)
    got = decode(wire)
    zeroed = tuple(TLV(3, b"\0" * 4) if t.type == TLVType.CRC32C else t for t in got.tlvs)
    assert dataclasses.replace(got, tlvs=zeroed) == dataclasses.replace(header, length=len(wire))


@examples(100)
@given(
    st.one_of(
        v2_headers().map(encode_header),
        address_pairs.flatmap(lambda p: st.builds(encode_v1, st.just(p[0]), st.just(p[1]), ports, ports)),
    ),
    st.binary(max_size=20),
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
)
def test_any_chunking_gives_the_same_header_and_rest(wire: bytes, payload: bytes, sizes: list[int]) -> None:
    data = wire + payload
    reader = HeaderReader()
    header = None
    at = 0
    for size in sizes * (len(data) // len(sizes) + 1):
        if at >= len(data):
            break
        header = reader.feed(data[at : at + size])
        at += size
    assert header == decode(wire)
    assert reader.rest == payload


def _mutations(wire: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(wire) - 1), st.integers(0, 255)).map(
        lambda p: wire[: p[0]] + bytes([p[1]]) + wire[p[0] + 1 :]
    )


garbage = st.one_of(
    st.binary(max_size=120),
    st.binary(max_size=80).map(lambda b: SIG + b),
    st.binary(max_size=80).map(lambda b: b"PROXY " + b),
    st.sampled_from([b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN"]).flatmap(
        lambda p: st.text("0123456789abcdef:. \r\n", max_size=60).map(lambda t: p + t.encode())
    ),
    v2_headers().map(encode_header).flatmap(_mutations),
    st.just(encode_v1("192.0.2.1", "198.51.100.1", 1, 2)).flatmap(_mutations),
)


@examples(300)
@given(garbage)
def test_arbitrary_bytes_raise_nothing_but_proxy_protocol_errors(data: bytes) -> None:
    def outcome(parse: object) -> object:
        assert callable(parse)
        try:
            return parse()
        except IncompleteHeader:
            return "incomplete"
        except ProxyProtocolError:
            return "invalid"

    whole = outcome(lambda: decode(data))
    bytewise = outcome(lambda: feed_bytewise(data)[0] or "incomplete")
    assert whole == bytewise
    if isinstance(whole, ProxyHeader):
        assert 0 < whole.length <= len(data)


@pytest.mark.parametrize("data", [b"PROXY TCP6 .:", b"PROXY TCP6 .", b"PROXY TCP6 1.2:"])
def test_a_dot_before_the_first_colon_is_rejected_alike_whole_and_byte_by_byte(data: bytes) -> None:
    """Found by the property test: the partial-field check once depended on where the bytes were cut."""
    with pytest.raises(ProxyProtocolError) as whole:
        decode(data)
    assert not isinstance(whole.value, IncompleteHeader)
    reader = HeaderReader()
    with pytest.raises(ProxyProtocolError):
        for byte in data:
            reader.feed(bytes([byte]))
