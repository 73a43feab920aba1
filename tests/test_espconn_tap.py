"""The transport tap on CPython: real TLS 1.2 bytes from CPython's ssl, cut anywhere.

The server's flight of a real handshake (memory BIOs, no network) is re-cut
into records of arbitrary sizes (plaintext handshake records may be split
anywhere, RFC 5246 6.2.1) and delivered in arbitrary read sizes; the tap must
capture exactly the server's Certificate message (check.chain cuts it into the
DER chain), or let through only the one expected, and see the Finished.
"""

import hashlib
import io
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espconn import check
from espconn.texts import explain
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


def drive(data, sizes, cap=0, want=None):
    # capture mode when given a size (set_size); match mode when given a digest; else pass
    tap = Tap(Feed(data, sizes), want, 2048, cap, 0, 0)
    out = bytearray(5000)
    k = 0
    while True:
        k += 1
        n = tap.readinto(memoryview(out)[: 1 + (k * 37 % 4999)])
        if n is None or n < 0:
            return tap, n


def cert_body(data):
    """The body of the server's Certificate handshake message in ``data`` (plaintext records)."""
    hs = b"".join(body for ct, body in records(data) if ct == 22)
    i = 0
    while True:
        t, n = hs[i], int.from_bytes(hs[i + 1 : i + 4], "big")
        if t == 11:
            return hs[i + 4 : i + 4 + n]
        i += 4 + n


@settings(max_examples=60, deadline=None)
@given(recsize=st.integers(1, 2000), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_chain_captured_from_any_cut(flight, recsize, sizes):
    # capture mode: the Certificate body lands in the connection's buffer and the stream stops there
    data, chain = flight
    tap, n = drive(recut(data, recsize), sizes, cap=2048)
    assert n == -103 and tap.err is None
    assert tap.got == len(cert_body(data)) == len(tap.buf) and bytes(tap.buf) == cert_body(data)
    assert [bytes(c) for c in check.chain(memoryview(tap.buf))] == chain
    assert not tap.finished
    assert tap.readinto(bytearray(100)) == -103  # nothing more reaches the TLS library


@settings(max_examples=30, deadline=None)
@given(recsize=st.integers(1, 2000), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_match_passes_the_checked_certificate_to_the_finished(flight, recsize, sizes):
    data, _ = flight
    tap, n = drive(recut(data, recsize), sizes, want=hashlib.sha256(cert_body(data)).digest())
    assert n is None and tap.err is None
    assert tap.seen and tap.finished


def test_match_refuses_another_certificate_before_its_last_byte(flight):
    data, _ = flight
    tap, n = drive(data, [100], want=hashlib.sha256(b"the chain checked before").digest())
    assert n == -103 and explain(tap.err)[0] == "certificate_changed"
    assert not tap.finished and not tap.seen
    assert tap.readinto(bytearray(100)) == -103


def test_certificate_bigger_than_the_buffer_names_set_size(flight):
    data, _ = flight
    tap, n = drive(data, [333], cap=200)
    assert n == -103 and explain(tap.err)[0] == "cert_too_big"
    assert "espconn_secure_set_size(ESPCONN_CLIENT, %d)" % len(cert_body(data)) in explain(tap.err)[1]
    assert not tap.got


def test_no_check_passes_everything(flight):
    data, _ = flight
    tap, n = drive(data, [333])
    assert n is None and tap.err is None and tap.finished


@pytest.mark.parametrize(
    "junk,reason",
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", "bad_record"),
        (bytes([22, 2, 0, 0, 4]) + bytes(4), "bad_record"),  # SSL 2.0 version bytes
        (bytes([22, 3, 3, 0x14, 0x00]), "oversize_record"),  # 5120 bytes: beyond axTLS's 5115
        (bytes([23, 3, 3, 0, 16]) + bytes(16), "tls13_or_resumed"),  # encrypted before any certificate
        (bytes([20, 3, 3, 0, 1, 1]), "tls13_or_resumed"),  # change_cipher_spec before any certificate
        (bytes([22, 3, 3, 0, 7]) + bytes([11, 0, 0, 3, 0, 0, 0]), "no_certificate"),  # empty list
        (bytes([22, 3, 3, 0, 4]) + bytes([11, 0, 0x40, 0]), "cert_too_big"),
    ],
)
def test_unreadable_input_fails_closed(junk, reason):
    tap, n = drive(junk, [7], cap=2048)
    assert n == -103 and explain(tap.err)[0] == reason
    assert not tap.got


def test_axtls_record_limit_is_named():
    tap, n = drive(bytes([22, 3, 3, 0x13, 0xFC]) + bytes(10), [100])  # 5116 bytes
    assert n == -103 and explain(tap.err)[0] == "oversize_record" and "5115" in explain(tap.err)[1]
    tap, n = drive(bytes([22, 3, 3, 0x13, 0xFB]) + bytes(10), [100])  # 5115 bytes: axTLS takes it
    assert n == 15 or n is None
    assert tap.err is None


@pytest.mark.parametrize(
    "msg,reason",
    [
        (bytes([0, 0, 7, 0, 0, 3, 1, 2, 3]), "bad_certificate_message"),  # list length beyond the message
        (bytes([0, 0, 3, 0, 0, 9]), "bad_certificate_message"),  # entry overruns
        (bytes([0, 0, 3, 0, 0, 0]), "bad_certificate_message"),  # zero-length entry
        (bytes([0, 0, 0]), "no_certificate"),
        (bytes([0, 0, 28]) + bytes([0, 0, 1, 0x30]) * 7, "bad_certificate_message"),  # more than 6 certificates
    ],
)
def test_malformed_certificate_list_is_refused(msg, reason):
    from espconn.errors import VerifyError

    with pytest.raises(VerifyError) as ei:
        check.chain(memoryview(msg))
    assert ei.value.reason == reason


def test_oversize_application_record_after_handshake(flight):
    data, _ = flight
    big = bytes([23, 3, 3]) + (2048 + 65).to_bytes(2, "big") + bytes(2048 + 65)
    tap, n = drive(data + big, [4096])
    assert n == -103 and explain(tap.err)[0] == "oversize_record" and "espconn_secure_set_size" in explain(tap.err)[1]


def test_socket_reset_is_kept_and_names_a_cut_record():
    class Reset(Feed):
        def readinto(self, buf):
            if self.pos >= len(self.data):
                raise OSError(104)
            return super().readinto(buf)

    tap = Tap(Reset(bytes([22, 3, 3, 0, 50]) + bytes(10), [100]), None, 2048, 0, 0, 0)
    assert tap.readinto(bytearray(100)) == 15
    assert tap.readinto(bytearray(100)) == -104
    assert tap.sock_err == 104 and explain(tap.err)[0] == "truncated_record"


def test_modulus_of_the_leaf_key_for_the_key_exchange_check(tmp_path):
    # the tap's estimate of axTLS's key-exchange heap needs the leaf's RSA modulus size
    from espssl import certs

    from espconn import tap

    for bits in (1024, 2048):
        k = certs.new_key(bits)
        c = certs.cert_der(certs.make_cert("x", k))
        msg = bytearray((len(c) + 3).to_bytes(3, "big") + len(c).to_bytes(3, "big") + c)
        assert tap.modulus(msg, len(msg)) == bits // 8
        assert tap.modulus(msg, 40) == 512  # key not in the part kept: assume RSA-4096
    assert tap.modulus(bytearray(100), 100) == 512


def test_tap_is_an_iobase_first():
    assert Tap.__mro__[1] is io.IOBase


def test_text_ids_named_in_the_device_modules_are_the_entries_of_texts():
    # A module records (text id, *numbers) under a const name; texts.py's table
    # says which id is which: a renumbered table must not give another reason.
    import pathlib
    import re

    from espconn import texts

    pkg = pathlib.Path(texts.__file__).parent
    table = dict((int(i), n) for i, n in re.findall(r"# (\d+) _T_(\w+)", (pkg / "texts.py").read_text()))
    assert sorted(table) == list(range(len(texts._TEXTS) // 2))
    seen = 0
    for f in sorted(pkg.glob("*.py")):
        for name, i in re.findall(r"^_T_(\w+) = const\((\d+)\)", f.read_text(), re.M):
            seen += 1
            assert table[int(i)] == name, (f.name, name, i)
        for name in re.findall(r"\b_T_(\w+)\b", f.read_text()):
            assert name in table.values(), (f.name, name)
    assert seen >= 40  # conn, tap and the API all name theirs
