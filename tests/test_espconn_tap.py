"""The transport tap on CPython: real TLS 1.2 bytes from CPython's ssl, cut anywhere.

The server's flight of a real handshake (memory BIOs, no network) is re-cut
into records of arbitrary sizes (plaintext handshake records may be split
anywhere, RFC 5246 6.2.1) and delivered in arbitrary read sizes; the tap must
hand the verifier exactly the server's DER chain, once, and see the Finished.
"""

import io
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espconn.tap import Tap
from espssl.hil.peers import client_context, server_context

from test_espconn import PKI, der


class Feed:
    """A socket stand-in: hands out ``data`` in the given read sizes, then would-block."""

    def __init__(self, data, sizes):
        self.data = data
        self.pos = 0
        self.sizes = list(sizes) or [4096]
        self.i = 0

    def readinto(self, buf):
        if self.pos >= len(self.data):
            return None
        n = min(len(buf), self.sizes[self.i % len(self.sizes)], len(self.data) - self.pos)
        self.i += 1
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def close(self):
        pass


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    """(server->client bytes up to and including its Finished, the chain DER list)."""
    pki = PKI(tmp_path_factory.mktemp("tap"))
    sctx = server_context(*pki.files("good"))
    cctx = client_context()  # no CA: certificates not checked here
    ci, co, si, so = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = cctx.wrap_bio(ci, co, server_side=False)
    s = sctx.wrap_bio(si, so, server_side=True)
    to_client = b""
    for _ in range(10):
        for obj in (c, s):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        si.write(co.read())
        chunk = so.read()
        to_client += chunk
        ci.write(chunk)
        if c.server_side is False and to_client and _done(c):
            break
    return to_client, [der(pki.leaves["good"][0])]


def _done(obj):
    try:
        obj.do_handshake()
        return True
    except ssl.SSLWantReadError:
        return False


def records(data):
    out = []
    i = 0
    while i < len(data):
        n = int.from_bytes(data[i + 3 : i + 5], "big")
        out.append((data[i], data[i + 5 : i + 5 + n]))
        i += 5 + n
    return out


def recut(data, size):
    """Split plaintext handshake records into records of at most ``size`` bytes."""
    out = b""
    ccs = False
    for ct, body in records(data):
        if ct == 22 and not ccs:
            for j in range(0, len(body), size):
                piece = body[j : j + size]
                out += bytes([22, 3, 3]) + len(piece).to_bytes(2, "big") + piece
        else:
            ccs = ccs or ct == 20
            out += bytes([ct, 3, 3]) + len(body).to_bytes(2, "big") + body
    return out


def drive(data, sizes, check):
    tap = Tap(Feed(data, sizes), check, 2048)
    buf = bytearray(5000)
    while True:
        n = tap.readinto(memoryview(buf)[: 1 + (tap.rx % 4999)])
        if n is None or n < 0:
            return tap, n


@settings(max_examples=60, deadline=None)
@given(recsize=st.integers(1, 2000), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_chain_reassembled_from_any_cut(flight, recsize, sizes):
    data, chain = flight
    seen = []
    tap, n = drive(recut(data, recsize), sizes, lambda certs: seen.append([bytes(c) for c in certs]))
    assert n is None and tap.err is None
    assert seen == [chain]
    assert tap.verified and tap.finished


def test_rejection_stops_the_stream(flight):
    from espconn.errors import VerifyError

    data, _ = flight

    def no(certs):
        raise VerifyError("unknown_issuer", "not trusted")

    tap, n = drive(data, [100], no)
    assert n == -103 and tap.err[0] == "unknown_issuer"
    assert not tap.finished
    # nothing after the Certificate message was handed on
    assert tap.readinto(bytearray(100)) == -103


def test_no_check_passes_everything(flight):
    data, _ = flight
    tap, n = drive(data, [333], None)
    assert n is None and tap.err is None and tap.finished


@pytest.mark.parametrize(
    "junk,reason",
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", "bad_record"),
        (bytes([22, 2, 0, 0, 4]) + bytes(4), "bad_record"),  # SSL 2.0 version bytes
        (bytes([22, 3, 3, 0x48, 0x01]), "bad_record"),  # longer than TLS allows
        (bytes([23, 3, 3, 0, 16]) + bytes(16), "tls13_or_resumed"),  # encrypted before any certificate
        (bytes([22, 3, 3, 0, 7]) + bytes([11, 0, 0, 3, 0, 0, 0]), "no_certificate"),  # empty list
        (bytes([22, 3, 3, 0, 10]) + bytes([11, 0, 0, 6, 0, 0, 3, 0, 0, 9]), "bad_certificate_message"),
        (bytes([22, 3, 3, 0, 4]) + bytes([11, 0, 0x40, 0]), "cert_too_big"),
    ],
)
def test_unreadable_input_fails_closed(junk, reason):
    called = []
    tap, n = drive(junk, [7], lambda certs: called.append(certs))
    assert n == -103 and tap.err[0] == reason
    assert not called


def test_oversize_application_record_after_handshake(flight):
    data, _ = flight
    big = bytes([23, 3, 3]) + (2048 + 65).to_bytes(2, "big") + bytes(2048 + 65)
    tap, n = drive(data + big, [4096], None)
    assert n == -103 and tap.err[0] == "oversize_record"


def test_tap_is_an_iobase_first():
    assert Tap.__mro__[1] is io.IOBase
