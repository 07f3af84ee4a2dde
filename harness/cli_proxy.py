"""``harness proxy``: PROXY protocol tools for people whose proxy logs "broken header".

nginx says ``broken header: "..." while reading PROXY protocol`` and stops there; HAProxy says
``Received something which does not look like a PROXY protocol header``. Neither says which rule the bytes
break. ``harness proxy decode`` reads one header (hex, text as nginx logs it, or raw bytes on stdin) with our
strict codec and prints it as JSON, or exits 1 with the rule it breaks and a hint at the usual causes.
``harness proxy listen`` accepts connections and prints each header it receives, so a load balancer can be
pointed at it to see what it really sends.

Exit codes: 0 a valid header, 1 a malformed or incomplete header (the reason on stderr), 2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from typing import Any

import click

from harness.net import proxyproto

__all__ = ["proxy"]

_HEX_NOISE = re.compile(r"0x|\\x|[\s:,-]", re.IGNORECASE)


def _from_hex(text: str) -> bytes:
    cleaned = _HEX_NOISE.sub("", text)
    try:
        return bytes.fromhex(cleaned)
    except ValueError as exc:
        raise click.BadParameter(
            f"not hex: {exc} (give hex digits, e.g. 0d0a0d0a000d0a515549540a..., or use --text)",
            param_hint="HEADER",
        ) from exc


def _from_text(text: str) -> bytes:
    """Text as nginx and HAProxy log it: backslash escapes (``\\r``, ``\\n``, ``\\xHH``) for other bytes."""
    try:
        return text.encode("latin-1").decode("unicode_escape").encode("latin-1")
    except (UnicodeError, ValueError) as exc:
        raise click.BadParameter(f"cannot read the escapes: {exc}", param_hint="HEADER") from exc


def hint(data: bytes) -> str | None:
    """The usual cause of a header that is not one, from its first bytes."""
    if data[:1] == b"\x16":
        return "this is a TLS ClientHello: the sender sends no PROXY header (or TLS is terminated in front of it)"
    if re.match(rb"^[A-Z]{3,7} \S", data) and not data.startswith(b"PROXY"):
        return (
            "this is a plain request: the sender sends no PROXY header; enable PROXY protocol on the load balancer "
            "(or remove proxy_protocol / accept-proxy from the receiver)"
        )
    if data[:5].upper() == b"PROXY" and not data.startswith(b"PROXY"):
        return "v1 is case-sensitive: the line must start with 'PROXY' in capitals"
    if data.startswith(proxyproto.V2_SIGNATURE[:6]) and not data.startswith(proxyproto.V2_SIGNATURE):
        return "the v2 signature is damaged: something between the sender and here rewrites bytes"
    return None


def _decode(data: bytes, expect: int | None) -> tuple[dict[str, Any] | None, str | None]:
    """(the header as JSON with the payload length, None) or (what we could read, why it is not valid)."""
    try:
        header = proxyproto.decode(data, expect=expect, verify_crc32c=False)
    except proxyproto.IncompleteHeader as exc:
        return None, f"incomplete header ({len(data)} bytes): {exc}"
    except proxyproto.ProxyProtocolError as exc:
        advice = hint(data)
        return None, f"{exc}" + (f"\nhint: {advice}" if advice else "")
    out = header.to_dict()
    out["payload_bytes"] = len(data) - header.length
    if header.crc32c_valid is False:
        return out, "bad CRC32C: a strict receiver (HAProxy) rejects this header; nginx does not check it"
    return out, None


@click.group()
def proxy() -> None:
    """PROXY protocol tools: decode a header, or listen and print the headers received."""


@proxy.command()
@click.argument("header", required=False)
@click.option("--text", "as_text", is_flag=True, help="HEADER is text with backslash escapes, as nginx logs it.")
@click.option("--expect", type=click.Choice(["1", "2"]), default=None, help="Accept only this version.")
def decode(header: str | None, as_text: bool, expect: str | None) -> None:
    """Decode one PROXY header: HEADER in hex (or text with --text), or raw bytes on stdin.

    Prints the header as JSON (version, command, family, addresses, ports, TLVs with names, whether the
    CRC32C is valid, how many payload bytes follow it). Exits 1 with the reason on stderr when the bytes are
    not a valid header.
    """
    if header is None or header == "-":
        if as_text and header is None:
            raise click.UsageError("--text needs a HEADER argument")
        data = sys.stdin.buffer.read()
    elif as_text:
        data = _from_text(header)
    else:
        data = _from_hex(header)
    if not data:
        raise click.UsageError("no bytes to decode (give HEADER, or pipe the bytes to stdin)")
    decoded, error = _decode(data, int(expect) if expect else None)
    if decoded is not None:
        click.echo(json.dumps(decoded, indent=2))
    if error is not None:
        click.echo(f"malformed PROXY header: {error}", err=True)
        raise SystemExit(1)


def _parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    if not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT or PORT", param_hint="ADDR")
    return host.strip("[]") or "0.0.0.0", int(port)


async def _listen(
    address: tuple[str, int], expect: int | None, timeout: float, count: int | None, reply: str | None
) -> int:
    malformed = 0
    seen = 0
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal malformed, seen
        peer = writer.get_extra_info("peername")
        record: dict[str, Any] = {"peer": f"{peer[0]}:{peer[1]}" if peer else None}
        try:
            header, rest = await proxyproto.read_header(reader, timeout=timeout, expect=expect, verify_crc32c=False)
        except proxyproto.ProxyProtocolError as exc:
            malformed += 1
            record["error"] = str(exc)
        else:
            record["header"] = header.to_dict()
            record["payload_preview"] = rest[:64].decode("latin-1")
            if header.crc32c_valid is False:
                malformed += 1
                record["error"] = "bad CRC32C"
            if reply is not None:
                writer.write(reply.encode().replace(b"\\r\\n", b"\r\n"))
        click.echo(json.dumps(record))
        seen += 1
        writer.close()
        if count is not None and seen >= count:
            finished.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finished.set)
    server = await asyncio.start_server(handle, address[0], address[1], reuse_address=True)
    host, port = server.sockets[0].getsockname()[:2]
    click.echo(f"listening on {host}:{port}", err=True)
    sys.stderr.flush()
    async with server:
        await finished.wait()
    return 1 if malformed and count is not None else 0


@proxy.command()
@click.argument("addr")
@click.option("--expect", type=click.Choice(["1", "2"]), default=None, help="Accept only this version.")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait for a whole header.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after this many connections.")
@click.option("--reply", default=None, help="Send this after a valid header (\\r\\n for CRLF), then close.")
def listen(addr: str, expect: str | None, timeout: float, count: int | None, reply: str | None) -> None:
    """Accept connections on ADDR (HOST:PORT, or PORT on 127.0.0.1) and print each header received.

    One JSON line per connection on stdout: the peer, the decoded header or the error. With --count, exits 1
    if any header was malformed.
    """
    address = _parse_address(addr)
    try:
        code = asyncio.run(_listen(address, int(expect) if expect else None, timeout, count, reply))
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {address[0]}:{address[1]}: {exc}") from exc
    if code:
        raise SystemExit(code)
