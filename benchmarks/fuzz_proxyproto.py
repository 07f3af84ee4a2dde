"""Coverage-guided fuzzing of the PROXY protocol decoder (atheris, i.e. libFuzzer, over the Python code).

Every input is decoded whole and fed byte by byte to a ``HeaderReader``. The only exception either may raise is
the codec's own ``ProxyProtocolError``, and the two must agree: the same header or the same kind of refusal.
A header that decodes must also render as JSON, as ``harness proxy decode`` prints it, and must survive
``encode_header`` → ``decode`` unchanged (but for its length on the wire). Anything else is a crash: libFuzzer
stops, writes the input to ``crash-…`` in the working directory and exits non-zero.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python benchmarks/fuzz_proxyproto.py --seconds 300          # prints libFuzzer's progress lines
    .venv/bin/python benchmarks/fuzz_proxyproto.py --seconds 300 --plant crash   # must end in a crash

The corpus starts from valid headers of every kind (v1 TCP4/TCP6/UNKNOWN; v2 INET, INET6, UNIX, LOCAL, DGRAM,
with each TLV the codec names) and is kept in ``--corpus`` (a temporary directory unless given). Exit code 0
when the time ran out without a crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

try:
    import atheris
except ImportError:
    print("atheris is missing: .venv/bin/pip install -e '.[fuzz]'", file=sys.stderr)
    sys.exit(2)

with atheris.instrument_imports():
    from harness.net import proxyproto
    from harness.net.proxyproto import TLV, HeaderReader, IncompleteHeader, ProxyHeader, ProxyProtocolError, TLVType


def seeds() -> dict[str, bytes]:
    """Valid headers of every kind the codec knows, as the corpus to start from."""
    ssl = bytes([0x07]) + (0).to_bytes(4, "big") + bytes([0x21, 0, 7]) + b"TLSv1.3" + bytes([0x22, 0, 2]) + b"cn"
    tlvs = [
        TLV(TLVType.ALPN, b"h2"),
        TLV(TLVType.AUTHORITY, b"example.com"),
        TLV(TLVType.UNIQUE_ID, b"\x01" * 16),
        TLV(TLVType.NOOP, b"\0\0\0"),
        TLV(TLVType.SSL, ssl),
        TLV(TLVType.NETNS, b"blue"),
        TLV(TLVType.AWS, b"\x01vpce-0123456789abcdef0"),
        TLV(0xE0, b"custom"),
    ]
    return {
        "v1_tcp4": proxyproto.encode_v1("192.0.2.1", "198.51.100.2", 40000, 443),
        "v1_tcp6": proxyproto.encode_v1("2001:db8::1", "2001:db8::2", 40000, 443),
        "v1_unknown": proxyproto.encode_v1_unknown(),
        "v1_payload": proxyproto.encode_v1("10.0.0.1", "10.0.0.2", 1, 2) + b"GET / HTTP/1.1\r\n\r\n",
        "v2_inet": proxyproto.encode_v2("192.0.2.1", "198.51.100.2", 40000, 443),
        "v2_inet_tlvs_crc": proxyproto.encode_v2("192.0.2.1", "198.51.100.2", 1, 2, tlvs=tlvs, crc32c=True),
        "v2_inet6_tlvs": proxyproto.encode_v2("2001:db8::1", "2001:db8::2", 1, 2, tlvs=tlvs[:3]),
        "v2_dgram": proxyproto.encode_v2("192.0.2.1", "198.51.100.2", 53, 53, transport="DGRAM"),
        "v2_unix": proxyproto.encode_v2_unix("/run/a.sock", "/run/b.sock", tlvs=tlvs[1:2]),
        "v2_local_crc": proxyproto.encode_v2_local(tlvs[:1], crc32c=True),
    }


def outcome(parse: object) -> ProxyHeader | str:
    assert callable(parse)
    try:
        header = parse()
    except IncompleteHeader:
        return "incomplete"
    except ProxyProtocolError:
        return "invalid"
    return header if header is not None else "incomplete"


def bytewise(data: bytes) -> ProxyHeader | None:
    reader = HeaderReader()
    for i in range(len(data)):
        header = reader.feed(data[i : i + 1])
        if header is not None:
            return header
    return None


def one_input(data: bytes) -> None:
    whole = outcome(lambda: proxyproto.decode(data))
    fed = outcome(lambda: bytewise(data))
    if whole != fed:
        raise AssertionError(f"decode gives {whole!r}, byte by byte {fed!r}")
    if not isinstance(whole, ProxyHeader):
        return
    json.dumps(whole.to_dict())
    again = proxyproto.decode(proxyproto.encode_header(whole))
    if dataclasses.replace(again, length=whole.length) != whole:
        raise AssertionError(f"re-encoding changed the header: {whole!r} → {again!r}")


def plant(bug: str) -> None:
    """A bug put into the decoder on purpose, to see the fuzzer find it (the run must then end in a crash).

    ``crash``: the v1 port field "99" raises IndexError, not the codec's error. ``disagree``: a HeaderReader fed
    byte by byte never completes a v2 header that ends exactly where the input does."""
    global HeaderReader
    if bug == "crash":
        port = proxyproto._v1_port

        def broken_port(field: bytes, name: str) -> int:
            if field == b"99":
                raise IndexError("planted bug: port 99")
            return port(field, name)

        proxyproto._v1_port = broken_port
    else:

        class Late(proxyproto.HeaderReader):
            def feed(self, chunk: bytes | bytearray | memoryview) -> ProxyHeader | None:
                header = super().feed(chunk)
                if header is not None and header.version == 2 and not self.rest:
                    self.header = None
                    return None
                return header

        HeaderReader = Late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=300, help="how long to fuzz")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus directory (kept between runs)")
    parser.add_argument("--max-len", type=int, default=640, help="longest input tried, bytes")
    parser.add_argument("--plant", choices=["crash", "disagree"], help="put a bug in first: the run must crash")
    args, rest = parser.parse_known_args()
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix="proxyproto-corpus-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        one_input(data)  # every seed must pass before fuzzing means anything
        (corpus / f"seed-{name}").write_bytes(data)
    if args.plant:
        plant(args.plant)
    print(f"corpus {corpus}, {args.seconds} s", flush=True)
    argv = [sys.argv[0], str(corpus), f"-max_total_time={args.seconds}", f"-max_len={args.max_len}", *rest]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
