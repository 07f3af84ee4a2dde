"""PROXY protocol v1 and v2 (haproxy ``doc/proxy-protocol.txt``): fast encoders for the load-balancer
simulator, a strict decoder for the checks, and deliberately broken headers for fault tests.

We do not use the PyPI ``proxy-protocol`` package: it accepts headers the spec says a receiver must reject
(leading zeros, stray spaces, a bad CRC32C, ...), and this harness exists to tell strict receivers from
lenient ones, so its own reading of the spec must be the strict one. Everything here is free of I/O except
:func:`read_header`, the asyncio helper.

The decoder fails as early as the bytes allow: :func:`decode` raises :class:`IncompleteHeader` only while more
bytes could still complete a valid header, and :class:`ProxyProtocolError` as soon as they cannot.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from harness.errors import HarnessError

__all__ = [
    "INCOMPLETE_KINDS",
    "MALFORMED_KINDS",
    "TLV",
    "UNIQUE_ID_MAX",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "Command",
    "HeaderReader",
    "IncompleteHeader",
    "ProxyHeader",
    "ProxyProtocolError",
    "TLVType",
    "crc32c",
    "decode",
    "encode",
    "encode_header",
    "encode_v1",
    "encode_v1_unknown",
    "encode_v2",
    "encode_v2_local",
    "encode_v2_unix",
    "malformed",
    "read_header",
]


class ProxyProtocolError(HarnessError):
    """Bytes that are not a valid PROXY header; the message says which rule they break."""


class IncompleteHeader(ProxyProtocolError):
    """Valid so far, but the header needs more bytes."""


class Command(IntEnum):
    LOCAL = 0
    PROXY = 1


class TLVType(IntEnum):
    """Registered v2 TLV types (the SSL subtypes share the namespace), plus AWS's custom 0xEA."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    SSL_VERSION = 0x21
    SSL_CN = 0x22
    SSL_CIPHER = 0x23
    SSL_SIG_ALG = 0x24
    SSL_KEY_ALG = 0x25
    NETNS = 0x30
    AWS = 0xEA


V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX_LENGTH: Final = 107  # including the CRLF
UNIQUE_ID_MAX: Final = 128
AWS_VPCE_ID: Final = 0x01  # subtype of TLV 0xEA

_SSL_CLIENT_FLAGS: Final = ((0x01, "SSL"), (0x02, "CERT_CONN"), (0x04, "CERT_SESS"))
_TEXT_TLVS: Final = frozenset(
    {
        TLVType.ALPN,
        TLVType.AUTHORITY,
        TLVType.NETNS,
        TLVType.SSL_VERSION,
        TLVType.SSL_CN,
        TLVType.SSL_CIPHER,
        TLVType.SSL_SIG_ALG,
        TLVType.SSL_KEY_ALG,
    }
)


_TLV_NAMES: Final = {t.value: t.name for t in TLVType}


def _tlv_name(type_: int) -> str:
    if type_ in _TLV_NAMES:
        return _TLV_NAMES[type_]
    if 0xE0 <= type_ <= 0xEF:
        return f"CUSTOM_0x{type_:02X}"
    return f"UNKNOWN_0x{type_:02X}"


# --- CRC32C ---------------------------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C_TABLE: Final = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C (Castagnoli, RFC 4960 appendix B) of ``data``; pass an earlier result as ``value`` to go on."""
    crc = value ^ 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- data model -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLV:
    """One v2 type-length-value entry; ``value`` is the raw bytes as on the wire."""

    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFF:
            raise ValueError(f"TLV type {self.type} is not a byte (0-255)")
        if len(self.value) > 0xFFFF:
            raise ValueError(f"TLV value of {len(self.value)} bytes does not fit a 16-bit length")

    @property
    def name(self) -> str:
        return _tlv_name(self.type)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: type, name, hex, and a decoded form where the spec gives the value a meaning."""
        value = self.value
        out: dict[str, Any] = {"type": self.type, "name": self.name, "length": len(value), "hex": value.hex()}
        if self.type in _TEXT_TLVS:
            out["text"] = value.decode("utf-8", "backslashreplace")
        elif self.type == TLVType.CRC32C and len(value) == 4:
            out["crc32c"] = f"0x{int.from_bytes(value, 'big'):08X}"
        elif self.type == TLVType.AWS and value[:1] == bytes([AWS_VPCE_ID]):
            out["aws_subtype"] = "VPCE_ID"
            out["vpce_id"] = value[1:].decode("ascii", "backslashreplace")
        elif self.type == TLVType.SSL:
            try:
                client, verify, subs = _parse_ssl(value)
            except ProxyProtocolError as exc:
                out["error"] = str(exc)
            else:
                out["ssl"] = {
                    "client": client,
                    "client_flags": [name for bit, name in _SSL_CLIENT_FLAGS if client & bit],
                    "verify": verify,
                    "sub_tlvs": [sub.to_dict() for sub in subs],
                }
        return out


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A decoded header. ``source``/``destination`` are None when the receiver must use the real endpoints
    (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC); for UNIX they are (path, 0). ``length`` is its size on the wire."""

    version: int
    command: Command
    family: str  # v1: TCP4 | TCP6 | UNKNOWN; v2: UNSPEC | INET | INET6 | UNIX
    transport: str  # STREAM | DGRAM | UNSPEC
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    tlvs: tuple[TLV, ...] = ()
    crc32c_valid: bool | None = None  # None: no CRC32C TLV
    length: int = 0

    def tlv(self, type_: int) -> TLV | None:
        """The first TLV of that type, if any."""
        return next((t for t in self.tlvs if t.type == type_), None)

    def to_dict(self) -> dict[str, Any]:
        def endpoint(ep: tuple[str, int] | None) -> dict[str, Any] | None:
            return None if ep is None else {"address": ep[0], "port": ep[1]}

        return {
            "version": self.version,
            "command": self.command.name,
            "family": self.family,
            "transport": self.transport,
            "source": endpoint(self.source),
            "destination": endpoint(self.destination),
            "tlvs": [t.to_dict() for t in self.tlvs],
            "crc32c_valid": self.crc32c_valid,
            "length": self.length,
        }


# --- encoders -------------------------------------------------------------------------------------

_V2_FIXED = struct.Struct("!12sBBH")
_V2_INET = struct.Struct("!4s4sHH")
_V2_INET6 = struct.Struct("!16s16sHH")
_V2_UNIX = struct.Struct("!108s108s")
_TLV_HEAD = struct.Struct("!BH")
_CRC_TLV_ZERO: Final = _TLV_HEAD.pack(TLVType.CRC32C, 4) + b"\0\0\0\0"

_FAMILIES: Final = {0x0: ("UNSPEC", 0), 0x1: ("INET", 12), 0x2: ("INET6", 36), 0x3: ("UNIX", 216)}
_FAMILY_CODES: Final = {name: code for code, (name, _) in _FAMILIES.items()}
_TRANSPORTS: Final = {0x0: "UNSPEC", 0x1: "STREAM", 0x2: "DGRAM"}
_TRANSPORT_CODES: Final = {name: code for code, name in _TRANSPORTS.items()}
_VALID_FAM_BYTES: Final = frozenset({0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32})


@functools.lru_cache(maxsize=4096)
def _address(addr: str) -> tuple[int, bytes, str]:
    """(4 or 6, packed, canonical text) of an IP address; an IPv6 zone (``%eth0``) is dropped."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    return ip.version, ip.packed, str(ip)


def _check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port!r} is not an integer in 0-65535")


def _addresses(src: str, dst: str) -> tuple[int, bytes, str, bytes, str]:
    sv, spacked, stext = _address(src)
    dv, dpacked, dtext = _address(dst)
    if sv != dv:
        raise ValueError(f"one address family per header: {src!r} is IPv{sv}, {dst!r} is IPv{dv}")
    return sv, spacked, stext, dpacked, dtext


def encode_v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n``; the family follows the addresses (mixed: ValueError)."""
    version, _, stext, _, dtext = _addresses(src, dst)
    _check_port(sport)
    _check_port(dport)
    return f"PROXY TCP{version} {stext} {dtext} {sport} {dport}\r\n".encode("ascii")


def encode_v1_unknown() -> bytes:
    return b"PROXY UNKNOWN\r\n"


def _check_tlv_for_encoding(tlv: TLV) -> None:
    try:
        _check_tlv(tlv)
    except ProxyProtocolError as exc:
        raise ValueError(f"TLV the decoder would reject: {exc}") from exc


def _pack_v2(command: int, fam: int, block: bytes, tlvs: Sequence[TLV], crc: bool) -> bytes:
    """The whole header. A CRC32C TLV already in ``tlvs`` is recomputed in place; ``crc`` appends one."""
    parts = [block]
    crc_at = -1  # offset of the CRC32C value within the body
    size = len(block)
    for tlv in tlvs:
        value = tlv.value
        if tlv.type == TLVType.CRC32C:
            if crc_at >= 0 or crc:
                raise ValueError("one CRC32C TLV per header (crc32c=True adds it)")
            if len(value) != 4:
                raise ValueError(f"CRC32C TLV of {len(value)} bytes (must be 4)")
            crc_at = size + 3
            value = b"\0\0\0\0"
        else:
            _check_tlv_for_encoding(tlv)
        parts.append(_TLV_HEAD.pack(tlv.type, len(value)))
        parts.append(value)
        size += 3 + len(value)
    if crc:
        crc_at = size + 3
        parts.append(_CRC_TLV_ZERO)
        size += len(_CRC_TLV_ZERO)
    if size > 0xFFFF:
        raise ValueError(f"v2 header body of {size} bytes does not fit its 16-bit length")
    head = _V2_FIXED.pack(V2_SIGNATURE, 0x20 | command, fam, size)
    if crc_at < 0:
        return head + b"".join(parts)
    out = bytearray(head)
    for part in parts:
        out += part
    at = len(head) + crc_at
    out[at : at + 4] = crc32c(out).to_bytes(4, "big")
    return bytes(out)


def encode_v2(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    command: Command = Command.PROXY,
    tlvs: Sequence[TLV] = (),
    crc32c: bool = False,
    transport: str = "STREAM",
) -> bytes:
    """A v2 header for TCP (or, with ``transport="DGRAM"``, UDP) over IPv4 or IPv6; ``crc32c`` appends a
    CRC32C TLV computed over the whole header (a CRC32C TLV passed in ``tlvs`` is instead filled in where it
    stands). TLVs the decoder would reject raise ValueError."""
    version, spacked, _, dpacked, _ = _addresses(src, dst)
    _check_port(sport)
    _check_port(dport)
    if transport not in ("STREAM", "DGRAM"):
        raise ValueError(f"transport {transport!r} is not STREAM or DGRAM")
    fam = (0x10 if version == 4 else 0x20) | _TRANSPORT_CODES[transport]
    block = (_V2_INET if version == 4 else _V2_INET6).pack(spacked, dpacked, sport, dport)
    return _pack_v2(Command(command), fam, block, tlvs, crc32c)


def encode_v2_local(tlvs: Sequence[TLV] = (), *, crc32c: bool = False) -> bytes:
    """A v2 LOCAL header (family UNSPEC, no addresses), as a proxy sends for its own health checks."""
    return _pack_v2(Command.LOCAL, 0x00, b"", tlvs, crc32c)


def encode_v2_unix(
    src_path: str,
    dst_path: str,
    *,
    transport: str = "STREAM",
    tlvs: Sequence[TLV] = (),
    crc32c: bool = False,
) -> bytes:
    """A v2 PROXY header for AF_UNIX; each path is NUL-padded to 108 bytes."""
    if transport not in ("STREAM", "DGRAM"):
        raise ValueError(f"transport {transport!r} is not STREAM or DGRAM")
    paths = [p.encode("utf-8", "surrogateescape") for p in (src_path, dst_path)]
    for raw in paths:
        if len(raw) > 108 or b"\0" in raw:
            raise ValueError(f"UNIX path {raw!r} is longer than 108 bytes or holds a NUL")
    block = _V2_UNIX.pack(*paths)
    return _pack_v2(Command.PROXY, 0x30 | _TRANSPORT_CODES[transport], block, tlvs, crc32c)


def encode(version: int, src: str, dst: str, sport: int, dport: int) -> bytes:
    """encode_v1 or encode_v2 (PROXY, TCP, no TLVs)."""
    if version == 1:
        return encode_v1(src, dst, sport, dport)
    if version == 2:
        return encode_v2(src, dst, sport, dport)
    raise ValueError(f"PROXY protocol version {version!r} (must be 1 or 2)")


def encode_header(header: ProxyHeader) -> bytes:
    """Re-encode a header (e.g. to relay it); a CRC32C TLV in it is recomputed. decode() inverts this."""
    if header.version == 1:
        if header.family == "UNKNOWN" or header.source is None or header.destination is None:
            return encode_v1_unknown()
        out = encode_v1(header.source[0], header.destination[0], header.source[1], header.destination[1])
        if out[6:10].decode("ascii") != header.family:
            raise ValueError(f"family {header.family} does not match the addresses {header.source[0]!r}")
        return out
    if header.version != 2:
        raise ValueError(f"PROXY protocol version {header.version!r} (must be 1 or 2)")
    try:
        fam = _FAMILY_CODES[header.family] << 4 | _TRANSPORT_CODES[header.transport]
    except KeyError as exc:
        raise ValueError(f"no v2 family/transport {header.family}/{header.transport}") from exc
    if fam not in _VALID_FAM_BYTES:
        raise ValueError(f"v2 family/transport byte 0x{fam:02X} is not one the spec defines")
    src, dst = header.source, header.destination
    size = _FAMILIES[fam >> 4][1]
    if not size or src is None or dst is None:
        block = bytes(size)
    elif header.family == "UNIX":
        block = _V2_UNIX.pack(*(p.encode("utf-8", "surrogateescape") for p in (src[0], dst[0])))
    else:
        version, spacked, _, dpacked, _ = _addresses(src[0], dst[0])
        if (version == 4) != (header.family == "INET"):
            raise ValueError(f"family {header.family} does not match the addresses {src[0]!r}")
        _check_port(src[1])
        _check_port(dst[1])
        block = (_V2_INET if version == 4 else _V2_INET6).pack(spacked, dpacked, src[1], dst[1])
    return _pack_v2(header.command, fam, block, header.tlvs, False)


# --- fault encoders -------------------------------------------------------------------------------

MALFORMED_KINDS: Final[Mapping[str, str]] = {
    "v1_no_crlf": "a v1 line without its CRLF (incomplete alone; payload after it is read as fields)",
    "v1_bare_lf": "a v1 line ending in LF alone",
    "v1_bare_cr": "a v1 line whose CR is not followed by LF",
    "v1_double_space": "two spaces before the source port",
    "v1_lowercase": "'proxy tcp4 ...' in lowercase",
    "v1_bad_protocol": "protocol word TCP5",
    "v1_family_mismatch": "TCP6 with IPv4 addresses, or TCP4 with IPv6 ones",
    "v1_leading_zero_address": "an IPv4 octet with a leading zero (IPv4 only)",
    "v1_leading_zero_port": "a source port with a leading zero",
    "v1_port_out_of_range": "destination port 65536",
    "v1_missing_field": "no destination port",
    "v1_too_long": "an UNKNOWN line with no CRLF within 107 bytes",
    "v1_truncated": "the first half of a valid v1 line (incomplete)",
    "v2_bad_signature": "the 8th signature byte flipped from 'Q' to 'q'",
    "v2_version_1": "version nibble 1 in a v2 header",
    "v2_version_3": "version nibble 3 in a v2 header",
    "v2_bad_command": "command 2",
    "v2_bad_family": "address family 4",
    "v2_bad_transport": "transport 3",
    "v2_length_short": "length 4, shorter than the address block",
    "v2_length_long": "length 16 bytes more than was sent (incomplete; any payload after it is read as TLVs)",
    "v2_tlv_overrun": "a TLV declaring more bytes than the header holds",
    "v2_bad_crc32c": "a CRC32C TLV with the wrong checksum",
    "v2_unique_id_too_long": "a UNIQUE_ID TLV of 129 bytes",
    "v2_truncated": "the first half of a valid v2 header (incomplete)",
    "no_header": "an HTTP request with no PROXY header in front",
}
INCOMPLETE_KINDS: Final = frozenset({"v1_no_crlf", "v1_truncated", "v2_length_long", "v2_truncated"})


def malformed(
    kind: str,
    src: str = "192.0.2.10",
    dst: str = "198.51.100.20",
    sport: int = 40000,
    dport: int = 443,
) -> bytes:
    """A deliberately bad header of one of :data:`MALFORMED_KINDS`. A strict receiver rejects each of them
    (those in :data:`INCOMPLETE_KINDS` by timing out or on the bytes that follow).

    A *duplicate header* needs no helper and is not malformed as bytes: it is two valid headers concatenated
    (``encode(1, ...) + encode(1, ...)``); the receiver decodes the first and must then treat the second as
    payload, which is the fault being tested.
    """
    v1 = encode_v1(src, dst, sport, dport)
    line = v1[:-2]
    family = _address(src)[0]
    v2 = encode_v2(src, dst, sport, dport)
    if kind == "v1_no_crlf":
        return line
    if kind == "v1_bare_lf":
        return line + b"\n"
    if kind == "v1_bare_cr":
        return line + b"\r\r\n"
    if kind == "v1_double_space":
        fields = line.split(b" ")
        return b" ".join(fields[:4]) + b"  " + b" ".join(fields[4:]) + b"\r\n"
    if kind == "v1_lowercase":
        return line[:10].lower() + line[10:] + b"\r\n"
    if kind == "v1_bad_protocol":
        return b"PROXY TCP5" + line[10:] + b"\r\n"
    if kind == "v1_family_mismatch":
        return b"PROXY TCP" + (b"6" if family == 4 else b"4") + line[10:] + b"\r\n"
    if kind == "v1_leading_zero_address":
        if family != 4:
            raise ValueError("v1_leading_zero_address needs IPv4 addresses (IPv6 groups may have leading zeros)")
        fields = line.split(b" ")
        head, _, last = fields[2].rpartition(b".")
        fields[2] = head + b".0" + last
        return b" ".join(fields) + b"\r\n"
    if kind == "v1_leading_zero_port":
        fields = line.split(b" ")
        fields[4] = b"0" + fields[4]
        return b" ".join(fields) + b"\r\n"
    if kind == "v1_port_out_of_range":
        return b" ".join([*line.split(b" ")[:5], b"65536"]) + b"\r\n"
    if kind == "v1_missing_field":
        return b" ".join(line.split(b" ")[:5]) + b"\r\n"
    if kind == "v1_too_long":
        return b"PROXY UNKNOWN " + b"x" * V1_MAX_LENGTH + b"\r\n"
    if kind == "v1_truncated":
        return v1[: len(v1) // 2]
    if kind == "v2_bad_signature":
        return v2[:7] + b"q" + v2[8:]
    if kind in ("v2_version_1", "v2_version_3"):
        return v2[:12] + bytes([int(kind[-1]) << 4 | 0x1]) + v2[13:]
    if kind == "v2_bad_command":
        return v2[:12] + b"\x22" + v2[13:]
    if kind == "v2_bad_family":
        return v2[:13] + bytes([0x40 | v2[13] & 0x0F]) + v2[14:]
    if kind == "v2_bad_transport":
        return v2[:13] + bytes([v2[13] & 0xF0 | 0x3]) + v2[14:]
    if kind == "v2_length_short":
        return v2[:14] + b"\x00\x04" + v2[16:]
    if kind == "v2_length_long":
        body = len(v2) - 16
        return v2[:14] + (body + 16).to_bytes(2, "big") + v2[16:]
    if kind == "v2_tlv_overrun":
        good = encode_v2(src, dst, sport, dport, tlvs=[TLV(TLVType.AUTHORITY, b"example.com")])
        at = len(v2) + 1  # the TLV's length field
        return good[:at] + (len(b"example.com") + 5).to_bytes(2, "big") + good[at + 2 :]
    if kind == "v2_bad_crc32c":
        good = encode_v2(src, dst, sport, dport, crc32c=True)
        return good[:-1] + bytes([good[-1] ^ 0x01])
    if kind == "v2_unique_id_too_long":
        uid = TLV(TLVType.UNIQUE_ID, b"u" * (UNIQUE_ID_MAX + 1))
        grown = v2[16:] + _TLV_HEAD.pack(uid.type, len(uid.value)) + uid.value
        return v2[:14] + len(grown).to_bytes(2, "big") + grown
    if kind == "v2_truncated":
        return v2[: len(v2) // 2]
    if kind == "no_header":
        return b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
    raise ValueError(f"unknown malformed kind {kind!r}; known: {', '.join(MALFORMED_KINDS)}")


# --- decoder: v1 ----------------------------------------------------------------------------------

_V1_PREFIX: Final = b"PROXY "
_V1_PROTOCOLS: Final = (b"TCP4", b"TCP6", b"UNKNOWN")
_V1_FIELDS: Final = ("protocol", "source address", "destination address", "source port", "destination port")
_IPV6_CHARS: Final = frozenset(b"0123456789abcdefABCDEF:.")


def _v1_ipv4(field: bytes, name: str, final: bool) -> str:
    if b":" in field:
        raise ProxyProtocolError(f"v1: TCP4 with an IPv6 {name} {field!r}")
    octets = field.split(b".")
    if len(octets) > 4 or (final and len(octets) != 4):
        raise ProxyProtocolError(f"v1: {name} {field!r} is not four dot-separated numbers")
    for i, octet in enumerate(octets):
        if not octet and not final and i == len(octets) - 1:
            break  # the octet has not started yet
        if not octet.isdigit():
            raise ProxyProtocolError(f"v1: {name} {field!r} is not four dot-separated numbers")
        if len(octet) > 1 and octet[0] == 0x30:
            raise ProxyProtocolError(f"v1: leading zero in {name} {field!r}")
        if len(octet) > 3 or int(octet) > 255:
            raise ProxyProtocolError(f"v1: octet {octet.decode()} out of range in {name} {field!r}")
    return field.decode("ascii")


def _v1_ipv6(field: bytes, name: str, final: bool) -> str:
    colon, dot = field.find(b":"), field.find(b".")
    if (colon < 0 and (dot >= 0 or final)) or 0 <= dot < colon:
        # no colon at all, or a dot before the first colon: no IPv6 address starts that way
        raise ProxyProtocolError(f"v1: TCP6 with a non-IPv6 {name} {field!r}")
    if len(field) > 45 or not _IPV6_CHARS.issuperset(field):
        raise ProxyProtocolError(f"v1: {name} {field!r} is not an IPv6 address")
    if not final:
        return ""
    try:
        return str(ipaddress.IPv6Address(field.decode("ascii")))
    except ValueError as exc:
        raise ProxyProtocolError(f"v1: {name} {field!r} is not an IPv6 address ({exc})") from exc


def _v1_port(field: bytes, name: str) -> int:
    if not field.isdigit():
        raise ProxyProtocolError(f"v1: {name} {field!r} is not a decimal number")
    if len(field) > 1 and field[0] == 0x30:
        raise ProxyProtocolError(f"v1: leading zero in {name} {field!r}")
    if len(field) > 5 or int(field) > 0xFFFF:
        raise ProxyProtocolError(f"v1: {name} {field.decode()} out of range (0-65535)")
    return int(field)


_V1Result = tuple[str, tuple[str, int] | None, tuple[str, int] | None]


def _parse_v1_fields(text: bytes, *, complete: bool) -> _V1Result | None:
    """Check what follows ``PROXY `` (without the CRLF). ``complete`` False: the line may still grow, so the
    last field may be partial; returns None if it is fine so far."""
    parts = text.split(b" ")
    proto = parts[0]
    if len(parts) == 1 and not complete:
        if not any(word.startswith(proto) for word in _V1_PROTOCOLS):
            raise ProxyProtocolError(f"v1: unknown protocol {proto!r}... (expected TCP4, TCP6 or UNKNOWN)")
        return None
    if proto == b"UNKNOWN":
        return ("UNKNOWN", None, None)  # anything may follow, up to the CRLF
    if proto not in (b"TCP4", b"TCP6"):
        if not proto:
            raise ProxyProtocolError("v1: two spaces after PROXY" if len(parts) > 1 else "v1: no protocol")
        raise ProxyProtocolError(f"v1: unknown protocol {proto!r} (expected TCP4, TCP6 or UNKNOWN)")
    addrs: list[str] = []
    ports: list[int] = []
    for i in range(1, len(parts)):
        field = parts[i]
        final = complete or i < len(parts) - 1
        if i == 5:
            if not field and len(parts) == 6:
                raise ProxyProtocolError("v1: space after the destination port (expected CRLF)")
            raise ProxyProtocolError(f"v1: {len(parts) + 1} fields, expected 6")
        name = _V1_FIELDS[i]
        if not field:
            if not final:
                return None  # the field has not started yet
            if i == len(parts) - 1:
                raise ProxyProtocolError(f"v1: space before CRLF where the {name} should be")
            raise ProxyProtocolError(f"v1: two spaces before {name}")
        if i <= 2:
            check = _v1_ipv4 if proto == b"TCP4" else _v1_ipv6
            addrs.append(check(field, name, final))
        else:
            ports.append(_v1_port(field, name))
    if not complete:
        return None
    if len(parts) < 5:
        raise ProxyProtocolError(f"v1: {len(parts) + 1} fields, expected 6 (no {_V1_FIELDS[len(parts)]})")
    return (proto.decode("ascii"), (addrs[0], ports[0]), (addrs[1], ports[1]))


def _decode_v1(buf: bytes) -> ProxyHeader:
    head = buf[: len(_V1_PREFIX)]
    if not _V1_PREFIX.startswith(head):
        raise ProxyProtocolError(f"v1: the line must start with 'PROXY ', not {head!r}")
    # the CRLF must end by byte 107, so the CR is among the first 106 bytes
    cr = buf.find(b"\r", 0, V1_MAX_LENGTH - 1)
    lf = buf.find(b"\n", 0, V1_MAX_LENGTH)
    if lf != -1 and (cr == -1 or lf < cr):
        raise ProxyProtocolError(f"v1: bare LF at byte {lf} (the line must end in CRLF)")
    if cr == -1:
        if len(buf) >= V1_MAX_LENGTH - 1:
            raise ProxyProtocolError(f"v1: no CRLF within the first {V1_MAX_LENGTH} bytes")
        _parse_v1_fields(buf[len(_V1_PREFIX) :], complete=False)
        raise IncompleteHeader(f"v1: {len(buf)} bytes and no CRLF yet")
    if cr + 1 == len(buf):
        _parse_v1_fields(buf[len(_V1_PREFIX) : cr], complete=True)
        raise IncompleteHeader("v1: CR received, waiting for LF")
    if buf[cr + 1] != 0x0A:
        raise ProxyProtocolError(f"v1: bare CR at byte {cr} (the line must end in CRLF)")
    result = _parse_v1_fields(buf[len(_V1_PREFIX) : cr], complete=True)
    assert result is not None
    family, source, destination = result
    return ProxyHeader(
        version=1,
        command=Command.LOCAL if family == "UNKNOWN" else Command.PROXY,
        family=family,
        transport="UNSPEC" if family == "UNKNOWN" else "STREAM",
        source=source,
        destination=destination,
        length=cr + 2,
    )


# --- decoder: v2 ----------------------------------------------------------------------------------


def _split_tlvs(buf: bytes, start: int, end: int, what: str) -> list[tuple[int, TLV]]:
    """(offset of the value, TLV) for each TLV in buf[start:end], which they must fill exactly."""
    out = []
    off = start
    while off < end:
        if end - off < 3:
            raise ProxyProtocolError(f"v2: {end - off} stray byte(s) at offset {off}, too short for a {what}TLV header")
        type_ = buf[off]
        size = int.from_bytes(buf[off + 1 : off + 3], "big")
        value_at = off + 3
        if value_at + size > end:
            raise ProxyProtocolError(
                f"v2: {what}TLV 0x{type_:02X} ({_tlv_name(type_)}) at offset {off} declares {size} bytes, "
                f"only {end - value_at} left"
            )
        out.append((value_at, TLV(type_, buf[value_at : value_at + size])))
        off = value_at + size
    return out


def _parse_ssl(value: bytes) -> tuple[int, int, tuple[TLV, ...]]:
    """(client flags, verify, sub-TLVs) of an SSL TLV's value."""
    if len(value) < 5:
        raise ProxyProtocolError(f"v2: SSL TLV of {len(value)} bytes, shorter than its client and verify fields")
    subs = tuple(tlv for _, tlv in _split_tlvs(value, 5, len(value), "SSL sub-"))
    return value[0], int.from_bytes(value[1:5], "big"), subs


def _check_tlv(tlv: TLV) -> None:
    size = len(tlv.value)
    if tlv.type == TLVType.CRC32C and size != 4:
        raise ProxyProtocolError(f"v2: CRC32C TLV of {size} bytes (must be 4)")
    if tlv.type == TLVType.UNIQUE_ID and size > UNIQUE_ID_MAX:
        raise ProxyProtocolError(f"v2: UNIQUE_ID TLV of {size} bytes (at most {UNIQUE_ID_MAX})")
    if tlv.type == TLVType.SSL:
        _parse_ssl(tlv.value)


def _check_v2_byte13(byte: int) -> None:
    if byte >> 4 != 2:
        raise ProxyProtocolError(f"v2: version {byte >> 4} in a v2 header (byte 13 is 0x{byte:02X}, must be 2)")
    if byte & 0x0F > 1:
        raise ProxyProtocolError(f"v2: unknown command 0x{byte & 0x0F:X} (0 LOCAL or 1 PROXY)")


def _check_v2_byte14(byte: int) -> None:
    if byte >> 4 not in _FAMILIES:
        raise ProxyProtocolError(f"v2: unknown address family 0x{byte >> 4:X} (byte 14 is 0x{byte:02X})")
    if byte & 0x0F not in _TRANSPORTS:
        raise ProxyProtocolError(f"v2: unknown transport 0x{byte & 0x0F:X} (byte 14 is 0x{byte:02X})")
    if byte not in _VALID_FAM_BYTES:
        raise ProxyProtocolError(
            f"v2: family {_FAMILIES[byte >> 4][0]} with transport {_TRANSPORTS[byte & 0x0F]} "
            f"(byte 14 0x{byte:02X}) is not a combination the spec defines"
        )


def _v2_addresses(buf: bytes, fam: int) -> tuple[tuple[str, int], tuple[str, int]]:
    if fam >> 4 == 0x1:
        s4, d4, sport, dport = _V2_INET.unpack_from(buf, 16)
        return (str(ipaddress.IPv4Address(s4)), sport), (str(ipaddress.IPv4Address(d4)), dport)
    if fam >> 4 == 0x2:
        s6, d6, sport, dport = _V2_INET6.unpack_from(buf, 16)
        return (str(ipaddress.IPv6Address(s6)), sport), (str(ipaddress.IPv6Address(d6)), dport)
    paths = [raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") for raw in _V2_UNIX.unpack_from(buf, 16)]
    return (paths[0], 0), (paths[1], 0)


def _decode_v2(buf: bytes, verify_crc32c: bool) -> ProxyHeader:
    sig = buf[: len(V2_SIGNATURE)]
    if sig != V2_SIGNATURE[: len(sig)]:
        i = next(i for i, (got, want) in enumerate(zip(sig, V2_SIGNATURE, strict=False)) if got != want)
        raise ProxyProtocolError(f"v2: signature byte {i + 1} is 0x{buf[i]:02X}, expected 0x{V2_SIGNATURE[i]:02X}")
    if len(buf) > 12:
        _check_v2_byte13(buf[12])
    if len(buf) > 13:
        _check_v2_byte14(buf[13])
    if len(buf) < 16:
        raise IncompleteHeader(f"v2: {len(buf)} of the 16 fixed bytes")
    command, fam = Command(buf[12] & 0x0F), buf[13]
    body = int.from_bytes(buf[14:16], "big")
    family, block = _FAMILIES[fam >> 4]
    if body < block:
        raise ProxyProtocolError(f"v2: length {body} is shorter than the {family} address block ({block})")
    total = 16 + body
    if len(buf) < total:
        raise IncompleteHeader(f"v2: {len(buf)} of {total} bytes")
    source = destination = None
    if command == Command.PROXY and block:
        source, destination = _v2_addresses(buf, fam)
    tlvs = []
    crc_at = -1
    for at, tlv in _split_tlvs(buf, 16 + block, total, ""):
        _check_tlv(tlv)
        if tlv.type == TLVType.CRC32C:
            if crc_at >= 0:
                raise ProxyProtocolError("v2: more than one CRC32C TLV")
            crc_at = at
        tlvs.append(tlv)
    crc_valid = None
    if crc_at >= 0:
        got = int.from_bytes(buf[crc_at : crc_at + 4], "big")
        computed = crc32c(buf[crc_at + 4 : total], crc32c(b"\0\0\0\0", crc32c(buf[:crc_at])))
        crc_valid = got == computed
        if not crc_valid and verify_crc32c:
            raise ProxyProtocolError(f"v2: bad CRC32C 0x{got:08X} (computed 0x{computed:08X})")
    return ProxyHeader(
        version=2,
        command=command,
        family=family,
        transport=_TRANSPORTS[fam & 0x0F],
        source=source,
        destination=destination,
        tlvs=tuple(tlvs),
        crc32c_valid=crc_valid,
        length=total,
    )


def decode(
    data: bytes | bytearray | memoryview, *, expect: int | None = None, verify_crc32c: bool = True
) -> ProxyHeader:
    """The header at the start of ``data`` (``data[header.length:]`` is payload). Raises IncompleteHeader
    while more bytes could complete it, ProxyProtocolError once they cannot. ``expect`` restricts the version;
    ``verify_crc32c=False`` reports a bad checksum as ``crc32c_valid=False`` instead of raising (as nginx)."""
    if expect not in (None, 1, 2):
        raise ValueError(f"expect={expect!r} (must be None, 1 or 2)")
    buf = bytes(data)
    if not buf:
        raise IncompleteHeader("no bytes yet")
    if buf[0] == V2_SIGNATURE[0]:
        if expect == 1:
            raise ProxyProtocolError("expected a PROXY v1 line, got 0x0D (a v2 signature?)")
        return _decode_v2(buf, verify_crc32c)
    if buf[0] == _V1_PREFIX[0]:
        if expect == 2:
            raise ProxyProtocolError("expected a PROXY v2 header, got 'P' (a v1 line?)")
        return _decode_v1(buf)
    raise ProxyProtocolError(f"no PROXY header: data starts with {buf[:16]!r}, neither 'PROXY' nor the v2 signature")


# --- incremental and asyncio ----------------------------------------------------------------------


class HeaderReader:
    """Incremental decoder: feed bytes as they arrive, one at a time or with payload attached.

    ``feed`` returns the header once complete (then ``rest`` holds the bytes after it, and later chunks are
    appended to ``rest``), None while incomplete, and raises ProxyProtocolError as soon as the bytes seen
    cannot be a valid header (and again on every later feed).
    """

    __slots__ = ("_buf", "_error", "_expect", "_need", "_verify", "header", "rest")

    def __init__(self, *, expect: int | None = None, verify_crc32c: bool = True) -> None:
        if expect not in (None, 1, 2):
            raise ValueError(f"expect={expect!r} (must be None, 1 or 2)")
        self._expect = expect
        self._verify = verify_crc32c
        self._buf = bytearray()
        self._need = 0  # for v2, bytes needed before another decode is worth trying
        self._error: ProxyProtocolError | None = None
        self.header: ProxyHeader | None = None
        self.rest = b""

    @property
    def buffered(self) -> int:
        """Bytes received so far and not yet part of a complete header."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> ProxyHeader | None:
        if self.header is not None:
            self.rest += bytes(chunk)
            return self.header
        if self._error is not None:
            raise self._error
        self._buf += chunk
        if len(self._buf) < self._need:
            return None
        try:
            header = decode(self._buf, expect=self._expect, verify_crc32c=self._verify)
        except IncompleteHeader:
            if self._buf[0] == V2_SIGNATURE[0] and len(self._buf) >= 16:
                self._need = 16 + int.from_bytes(self._buf[14:16], "big")
            return None
        except ProxyProtocolError as exc:
            self._error = exc
            raise
        self.header = header
        self.rest = bytes(self._buf[header.length :])
        self._buf.clear()
        return header


_READ_SIZE: Final = 65536


async def read_header(
    reader: asyncio.StreamReader,
    *,
    timeout: float = 3.0,
    expect: int | None = None,
    verify_crc32c: bool = True,
) -> tuple[ProxyHeader, bytes]:
    """Read a PROXY header from ``reader``: the header and any payload bytes read along with it. Raises
    ProxyProtocolError on malformed bytes, on EOF before the header is complete and after ``timeout`` s
    (the spec suggests at least 3 s, to cover a TCP retransmit)."""
    parser = HeaderReader(expect=expect, verify_crc32c=verify_crc32c)
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(_READ_SIZE)
                if not chunk:
                    raise ProxyProtocolError(
                        f"connection closed after {parser.buffered} bytes, before a complete PROXY header"
                    )
                header = parser.feed(chunk)
                if header is not None:
                    return header, parser.rest
    except TimeoutError as exc:
        raise ProxyProtocolError(
            f"no complete PROXY header within {timeout} s ({parser.buffered} bytes received)"
        ) from exc
