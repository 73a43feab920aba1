"""espconn.der: the DER walker, on CPython and on the MicroPython unix port."""

import json

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from espconn import der
from espconn.errors import VerifyError
from espssl import certs

_KEY = None


def _key():
    global _KEY
    if _KEY is None:
        _KEY = certs.new_key(2048)
    return _KEY


@pytest.fixture(scope="module")
def chain():
    """(ca_der, leaf_der, ca_cert, leaf_cert) from espssl.certs."""
    ca_key = certs.new_key(2048)
    ca = certs.make_cert("Test Root CA", ca_key, is_ca=True)
    leaf = certs.make_cert("127.0.0.1", _key(), issuer=ca, issuer_key=ca_key, ips=("127.0.0.1",))
    return certs.cert_der(ca), certs.cert_der(leaf), ca, leaf


def malformed(fn, *args):
    with pytest.raises(VerifyError) as e:
        fn(*args)
    assert e.value.reason == "malformed"
    return str(e.value)


# --- read ------------------------------------------------------------------------


def test_read_short_form():
    buf = b"\x02\x01\x05rest"
    assert der.read(buf, 0, len(buf)) == (0x02, 2, 3)


def test_read_long_forms():
    # 0x81 0x80: 128 bytes (one length byte); 0x82 0x01 0x00: 256; 0x83: 65536.
    b1 = b"\x04\x81\x80" + bytes(128)
    assert der.read(b1, 0, len(b1)) == (0x04, 3, 131)
    b2 = b"\x30\x82\x01\x00" + bytes(256)
    assert der.read(b2, 0, len(b2)) == (0x30, 4, 260)
    b3 = b"\x04\x83\x01\x00\x00" + bytes(65536)
    assert der.read(b3, 0, len(b3)) == (0x04, 5, 5 + 65536)


def test_read_at_offset_and_memoryview():
    buf = bytearray(b"\xff\xff\x30\x03\x02\x01\x07\xff")
    mv = memoryview(buf)
    assert der.read(mv, 2, 7) == (0x30, 4, 7)
    assert der.expect(mv, 4, 7, 0x02) == (6, 7)
    assert der.uint(mv, 6, 7) == 7


def test_read_zero_length_value():
    assert der.read(b"\x05\x00", 0, 2) == (0x05, 2, 2)


@pytest.mark.parametrize(
    "buf, end, why",
    [
        (b"", 0, "truncated TLV"),
        (b"\x30", 1, "truncated TLV"),
        (b"\x30\x05\x00\x00", 4, "beyond its container"),
        (b"\x1f\x01\x00", 3, "multi-byte tag"),  # high-tag form
        (b"\x3f\x01\x00", 3, "multi-byte tag"),
        (b"\x30\x80\x00\x00", 4, "indefinite"),
        (b"\x04\x84\x00\x00\x00\x01\x00", 7, "length too long"),
        (b"\x04\x82\x01", 3, "truncated length"),
        (b"\x04\x81\x05" + bytes(5), 8, "non-minimal length"),  # long form for < 128
        (b"\x04\x82\x00\x80" + bytes(128), 132, "non-minimal length"),  # leading 0
    ],
)
def test_read_rejects(buf, end, why):
    assert why in malformed(der.read, buf, 0, end)


def test_read_length_bounded_by_end_not_buffer():
    # The whole buffer would hold it, but the container given does not.
    buf = b"\x30\x04\x02\x02\x01\x00\x02\x01\x00"
    assert der.read(buf, 0, len(buf)) == (0x30, 2, 6)
    malformed(der.read, buf, 0, 5)
    malformed(der.read, buf, 2, 5)


def test_read_end_past_buffer_and_negative_offset():
    malformed(der.read, b"\x02\x01\x00", 0, 10)
    malformed(der.read, b"\x02\x01\x00", -1, 3)


def test_expect_wrong_tag():
    msg = malformed(der.expect, b"\x02\x01\x00", 0, 3, 0x30)
    assert "0x30" in msg and "0x02" in msg


# --- uint ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, value",
    [(b"\x00", 0), (b"\x7f", 127), (b"\x00\x80", 128), (b"\x01\x00\x01", 65537), (b"\x00" + b"\xff" * 20, 2**160 - 1)],
)
def test_uint(content, value):
    assert der.uint(content, 0, len(content)) == value


@pytest.mark.parametrize("content, why", [(b"", "empty"), (b"\x80", "negative"), (b"\xff\x00", "negative"), (b"\x00\x01", "non-minimal")])
def test_uint_rejects(content, why):
    assert why in malformed(der.uint, content, 0, len(content))


# --- equal -----------------------------------------------------------------------


def test_equal():
    a = b"xxABCDyy"
    b = bytearray(b"ABCD")
    assert der.equal(a, 2, 6, b, 0, 4)
    assert der.equal(memoryview(a), 2, 6, memoryview(b), 0, 4)
    assert not der.equal(a, 2, 6, b"ABCE", 0, 4)
    assert not der.equal(a, 2, 6, b, 0, 3)  # different lengths
    assert der.equal(a, 3, 3, b, 1, 1)  # both empty
    malformed(der.equal, a, 6, 10, b"ABCD", 0, 4)  # span past the buffer


# --- cert_names --------------------------------------------------------------------


def _name_der(name):
    return name.public_bytes()


def test_cert_names_real_certificates(chain):
    ca_der, leaf_der, ca, leaf = chain
    io, ie, so, se = der.cert_names(leaf_der)
    assert leaf_der[io:ie] == _name_der(leaf.issuer) == _name_der(ca.subject)
    assert leaf_der[so:se] == _name_der(leaf.subject)
    io, ie, so, se = der.cert_names(memoryview(ca_der))
    assert ca_der[io:ie] == ca_der[so:se] == _name_der(ca.subject)
    # The leaf's issuer span equals the CA's subject span, compared in place.
    lio, lie, _, _ = der.cert_names(leaf_der)
    _, _, cso, cse = der.cert_names(ca_der)
    assert der.equal(leaf_der, lio, lie, ca_der, cso, cse)


def _tlv(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(nb)]) + nb + content


def test_cert_names_v1_certificate():
    # A v1 TBSCertificate (no [0] version), as the SDK's makefile.sh made,
    # encoded by hand: serial, algorithm, issuer, validity, subject, key.
    from cryptography.x509.oid import NameOID

    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SDK CA")]).public_bytes()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "192.168.4.1")]).public_bytes()
    alg = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d010105")) + b"\x05\x00")
    validity = _tlv(0x30, _tlv(0x17, b"260101000000Z") + _tlv(0x17, b"300101000000Z"))
    tbs = _tlv(0x30, _tlv(0x02, b"\x12\x34") + alg + issuer + validity + subject + _tlv(0x30, b""))
    d = _tlv(0x30, tbs + alg + _tlv(0x03, b"\x00" + bytes(128)))
    io, ie, so, se = der.cert_names(d)
    assert d[io:ie] == issuer
    assert d[so:se] == subject


def test_cert_names_rejects_non_certificates(chain):
    ca_der = chain[0]
    malformed(der.cert_names, b"")
    malformed(der.cert_names, b"\x30\x00")
    malformed(der.cert_names, ca_der[:100])  # truncated
    malformed(der.cert_names, b"\x02\x01\x00")
    # A SEQUENCE holding a SEQUENCE whose first field is a BOOLEAN, not a serial.
    assert "serial" in malformed(der.cert_names, b"\x30\x05\x30\x03\x01\x01\xff")


# --- check -------------------------------------------------------------------------


def test_check_counts_every_tlv(chain):
    ca_der = chain[0]
    n = der.check(ca_der, 0, len(ca_der))
    assert n > 20
    # SEQ { INT, SEQ { NULL } } = 4 TLVs
    buf = b"\x30\x07\x02\x01\x01\x30\x02\x05\x00"
    assert der.check(buf, 0, len(buf)) == 4


def test_check_rejects_bad_children_and_depth():
    # The inner INTEGER claims more than its SEQUENCE holds.
    malformed(der.check, b"\x30\x03\x02\x05\x00", 0, 5)
    # Trailing garbage inside the SEQUENCE.
    malformed(der.check, b"\x30\x03\x05\x00\x30", 0, 5)
    deep = b"\x05\x00"  # NULL inside 12 nested SEQUENCEs: 13 TLVs, 12 levels
    for _ in range(12):
        deep = bytes([0x30, len(deep)]) + deep
    assert der.check(deep, 0, len(deep), depth=12) == 13
    assert "too deep" in malformed(der.check, deep, 0, len(deep), 11)


# --- hypothesis: any bytes -> VerifyError or spans inside bounds ---------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64), st.integers(0, 70), st.integers(0, 70))
def test_read_any_bytes(data, off, end):
    try:
        tag, v, e = der.read(data, off, end)
    except VerifyError as exc:
        assert exc.reason == "malformed"
        return
    assert 0 <= off < v <= e <= end <= len(data)
    assert tag & 0x1F != 0x1F


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 12))
def test_check_any_bytes(data, depth):
    try:
        n = der.check(data, 0, len(data), depth)
    except VerifyError as exc:
        assert exc.reason == "malformed"
        return
    assert 0 <= n <= len(data) // 2


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_cert_names_mutated_certificate(chain, data):
    leaf_der = bytearray(chain[1])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(leaf_der) - 1))
        leaf_der[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(leaf_der)))
    buf = bytes(leaf_der[:cut])
    try:
        io, ie, so, se = der.cert_names(buf)
    except VerifyError as exc:
        assert exc.reason == "malformed"
        return
    assert 0 < io < ie <= so < se <= len(buf)
    assert buf[io] == 0x30 and buf[so] == 0x30


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24))
def test_uint_any_bytes(data):
    try:
        v = der.uint(data, 0, len(data))
    except VerifyError as exc:
        assert exc.reason == "malformed"
        return
    assert v == int.from_bytes(data, "big") and v >= 0


# --- the same walker on MicroPython (38 KiB heap) -----------------------------------

_MP_SCRIPT = r"""
import sys, json, gc
from espconn import der
from espconn.errors import VerifyError
d = open(sys.argv[1], "rb").read()
out = {}
mv = memoryview(d)
names = der.cert_names(mv)
gc.collect()
free = gc.mem_free()
names = der.cert_names(mv)
alloc = free - gc.mem_free()
out["names"] = list(names)
out["names_alloc"] = alloc
out["count"] = der.check(mv, 0, len(d))
out["uint"] = der.uint(b"\x01\x00\x01", 0, 3)
out["equal"] = der.equal(mv, out["names"][0], out["names"][1], mv, out["names"][2], out["names"][3])
errs = []
for buf in (b"", b"\x30\x05\x00", b"\x1f\x01\x00", b"\x30\x80\x00\x00", b"\x04\x84\x00\x00\x00\x01\x00", b"\x04\x81\x05\x00\x00\x00\x00\x00"):
    try:
        der.read(buf, 0, len(buf))
        errs.append("accepted")
    except VerifyError as e:
        errs.append(e.reason)
out["errs"] = errs
try:
    der.cert_names(mv[:200])
    out["trunc"] = "accepted"
except VerifyError as e:
    out["trunc"] = e.reason
print(json.dumps(out))
"""


@pytest.mark.micropython
def test_on_micropython(micropython, firmware_mpy, chain, tmp_path):
    ca_der, leaf_der = chain[0], chain[1]
    p = tmp_path / "leaf.der"
    p.write_bytes(leaf_der)
    drv = firmware_mpy.driver(tmp_path / "drv", "der_driver", _MP_SCRIPT)
    proc = micropython.run("import der_driver\n", args=(p,), path=(drv, firmware_mpy(empty_init=True)))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["names"] == list(der.cert_names(leaf_der))
    assert out["count"] == der.check(leaf_der, 0, len(leaf_der))
    assert out["uint"] == 65537
    assert out["equal"] is False  # leaf: issuer (CA) != subject
    assert out["errs"] == ["malformed"] * 6
    assert out["trunc"] == "malformed"
    # Walking a certificate in place allocates only the small result tuples
    # (48 bytes each with the unix port's 64-bit words, half on the ESP8266),
    # never a copy of the certificate.
    assert out["names_alloc"] <= 1024
