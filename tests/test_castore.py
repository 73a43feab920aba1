"""espconn.castore: the esp_ca_cert.bin CA store, read in a streaming way.

Store images are built with binfmt (the one codec of the format) from real
certificates made by espssl.certs; they are read through a flash-like
``read(offset, buf)`` on CPython and on the MicroPython unix port (38 KiB heap).
"""

import json
import sys
import types

import pytest
from conftest import count_rsa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from espconn import binfmt, castore, der
from espconn.errors import StoreError
from espssl import certs


SECTOR = 4096


class Pki:
    """One key, many CA certificates (distinct subjects): cheap to make."""

    def __init__(self):
        self.key = certs.new_key(2048)
        self.cas = [certs.make_cert("Store CA %03d" % i, self.key, is_ca=True) for i in range(128)]
        self.ders = [certs.cert_der(c) for c in self.cas]
        self.pems = [certs.cert_pem(c) for c in self.cas]


@pytest.fixture(scope="module")
def pki():
    return Pki()


def flash(image, base=0, total=None):
    """An erased flash of ``total`` bytes with ``image`` at ``base``, and its read()."""
    size = total or base + max(1, (len(image) + SECTOR - 1) // SECTOR) * SECTOR
    mem = bytearray(b"\xff" * size)
    mem[base : base + len(image)] = image
    reads = []

    def read(off, buf):
        reads.append((off, len(buf)))
        buf[:] = mem[off : off + len(buf)]

    return mem, read, reads


def store_of(image, base=0):
    mem, read, _ = flash(image, base)
    return castore.CAStore(read, base, len(mem) - base)


def subject(d):
    s0, s1 = der.cert_names(d)[2:]
    return d, s0, s1


def fails(store, reason):
    with pytest.raises(StoreError) as e:
        store.check()
    assert e.value.reason == reason, str(e.value)
    assert "\n" not in str(e.value) and str(e.value).startswith("CA store: ")
    return str(e.value)


# --- reading good stores -------------------------------------------------------------


def test_der_entries(pki):
    img = binfmt.image([("ca%d" % i, pki.ders[i]) for i in range(3)])
    s = store_of(img)
    assert s.check() == 3
    assert list(s) == pki.ders[:3]
    assert all(type(d) is bytes for d in s)


def test_pem_entry_with_several_certificates_and_text(pki):
    # Text around and between blocks (openssl x509 -text style), CRLF lines.
    pem = (
        b"Certificate:\n    Data: (openssl -text output)\n"
        + pki.pems[0]
        + b"\nsome words in between\n"
        + pki.pems[1].replace(b"\n", b"\r\n")
        + pki.pems[2]
        + b"trailing text without a newline"
    )
    s = store_of(binfmt.image([("bundle", pem), ("der", pki.ders[3])]))
    assert s.check() == 4
    assert list(s) == pki.ders[:4]


def test_pem_line_lengths_do_not_matter(pki):
    import base64

    body = base64.b64encode(pki.ders[5])
    one_line = b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"
    short = b"\n".join(body[i : i + 7] for i in range(0, len(body), 7))
    short_lines = b"-----BEGIN CERTIFICATE-----\n" + short + b"\n-----END CERTIFICATE-----"  # no final newline
    s = store_of(binfmt.image([("a", one_line), ("b", short_lines)]))
    assert list(s) == [pki.ders[5], pki.ders[5]]


def test_store_at_a_sector_offset(pki):
    img = binfmt.image([("ca", pki.ders[0])])
    mem, read, _ = flash(img, base=3 * SECTOR)
    s = castore.CAStore(read, 3 * SECTOR, SECTOR)
    assert list(s) == [pki.ders[0]]


def test_issuers_finds_by_subject(pki):
    img = binfmt.image([("ca%d" % i, pki.ders[i]) for i in range(8)] + [("bundle", pki.pems[8] + pki.pems[9])])
    s = store_of(img)
    for i in (0, 7, 8, 9):
        assert list(s.issuers(*subject(pki.ders[i]))) == [pki.ders[i]]
    # The Name given inside a bigger buffer (a leaf's issuer field), in place.
    leaf = certs.make_cert("leaf", pki.key, issuer=pki.cas[9], issuer_key=pki.key)
    ld = memoryview(certs.cert_der(leaf))
    io, ie = der.cert_names(ld)[:2]
    assert list(s.issuers(ld, io, ie)) == [pki.ders[9]]
    # A Name no CA has.
    assert list(s.issuers(*subject(pki.ders[20]))) == []


def test_issuers_yields_every_match(pki):
    # Two CAs with one subject (re-keyed or cross-signed): both are candidates.
    other = certs.make_cert("Store CA 001", certs.new_key(1024), is_ca=True)
    od = certs.cert_der(other)
    s = store_of(binfmt.image([("old", pki.ders[1]), ("x", pki.ders[2]), ("new", od)]))
    assert list(s.issuers(*subject(od))) == [pki.ders[1], od]


def test_issuers_of_a_chain_in_one_scan(pki):
    # Every store certificate that issues one of the chain's, in store order and once
    # each, whatever the chain's order; a chain certificate that is no certificate names
    # nothing; the rest of the store is not returned.
    other = certs.make_cert("Store CA 001", certs.new_key(1024), is_ca=True)  # 1's subject again
    od = certs.cert_der(other)
    img = binfmt.image([("ca%d" % i, pki.ders[i]) for i in range(6)] + [("again", od)])
    mem, read, reads = flash(img)
    s = castore.CAStore(read, 0, len(mem))
    leaf1 = certs.cert_der(certs.make_cert("leaf", pki.key, issuer=pki.cas[1], issuer_key=pki.key))
    leaf4 = certs.cert_der(certs.make_cert("leaf", pki.key, issuer=pki.cas[4], issuer_key=pki.key))
    assert s.issuers_of([leaf4, b"\x30\x03junk", leaf1, leaf4]) == [pki.ders[1], pki.ders[4], od]
    assert s.issuers_of([pki.ders[3]]) == [pki.ders[3]]  # self-issued: the anchor itself
    assert s.issuers_of([certs.cert_der(certs.make_cert("x", pki.key, issuer=pki.cas[20], issuer_key=pki.key))]) == []
    # one scan per call once the store was checked
    s.check()
    del reads[:]
    s.issuers_of([leaf1, leaf4])
    once = len(reads)
    del reads[:]
    list(s)
    assert once == len(reads)


def test_issuers_of_gives_verify_chain_what_the_store_gives(pki):
    # The device check verifies against this list instead of the store: same outcome.
    from espconn import x509 as ex

    root_key = pki.key
    leaf = certs.make_cert("127.0.0.1", certs.new_key(2048), issuer=pki.cas[5], issuer_key=root_key)
    stranger = certs.make_cert("127.0.0.1", certs.new_key(2048), issuer=pki.cas[30], issuer_key=root_key)
    s = store_of(binfmt.image([("ca%d" % i, pki.ders[i]) for i in range(8)]))
    got = []
    for chain in ([certs.cert_der(leaf)], [certs.cert_der(stranger)], [certs.cert_der(leaf), pki.ders[5]]):
        for anchors, seen in ((s, None), (s.issuers_of(chain), s.verified)):
            try:
                got.append(ex.verify_chain(chain, anchors, verified=seen))
            except ex.VerifyError as e:
                got.append(e.reason)
    assert got == [None, None, "unknown_issuer", "unknown_issuer", None, None]
    assert s.verified  # the anchor's own signature, checked once, remembered in the list given


def test_scans_may_nest(pki):
    s = store_of(binfmt.image([("ca%d" % i, pki.ders[i]) for i in range(3)] + [("p", pki.pems[3] + pki.pems[4])]))
    pairs = [(a, b) for a in s for b in s]
    assert len(pairs) == 25 and pairs[6] == (pki.ders[1], pki.ders[1])


def test_a_full_sector_of_der(pki):
    # As many certificates as one sector holds, the rest of it erased.
    n = SECTOR // (binfmt.HEADER_LEN + len(pki.ders[0]))
    img = binfmt.image([("ca%d" % i, pki.ders[i]) for i in range(n)], max_bytes=SECTOR)
    mem, read, _ = flash(img)
    assert len(mem) == SECTOR
    assert castore.CAStore(read, 0).check() == n


def test_reads_are_small(pki):
    # PEM text is read in small chunks; a DER entry in one read of its size.
    img = binfmt.image([("der", pki.ders[0]), ("pem", pki.pems[1] + pki.pems[2])])
    mem, read, reads = flash(img)
    assert castore.CAStore(read, 0, len(mem)).check() == 3
    assert max(n for _, n in reads) == len(pki.ders[0])
    pem_reads = [n for off, n in reads if off > binfmt.HEADER_LEN * 2 + len(pki.ders[0])]
    assert pem_reads and max(pem_reads) <= 66  # 64-byte chunks, or one 64-character line + CRLF


# --- refusing bad stores (fail closed) --------------------------------------------


def test_erased(pki):
    mem, read, _ = flash(b"")
    assert "erased" in fails(castore.CAStore(read, 0, SECTOR), "erased")


def test_erased_never_means_accept(pki):
    mem, read, _ = flash(b"")
    s = castore.CAStore(read, 0, SECTOR)
    with pytest.raises(StoreError) as e:
        list(s.issuers(*subject(pki.ders[0])))
    assert e.value.reason == "erased"
    with pytest.raises(StoreError):
        list(s)


def test_empty_but_not_erased():
    # A header whose length reads 0xFFFF: the list ends before any entry.
    img = b"ca".ljust(32, b"\0") + b"\xff\xff"
    fails(store_of(img), "empty")


def test_zeroed_flash_is_corrupt():
    s = castore.CAStore(lambda off, buf: buf.__setitem__(slice(None), bytes(len(buf))), 0, SECTOR)
    fails(s, "corrupt")


def test_truncated_entry(pki):
    img = binfmt.image([("ca", pki.ders[0])])
    mem, read, _ = flash(img)
    assert "claims" in fails(castore.CAStore(read, 0, len(img) - 10), "truncated")


def test_der_shorter_than_its_header(pki):
    # The entry says 100 bytes fewer than the certificate's DER length.
    d = pki.ders[0]
    img = binfmt.header("cut", len(d) - 100) + d
    fails(store_of(img), "truncated")


def test_bytes_after_der_certificate(pki):
    fails(store_of(binfmt.image([("x", pki.ders[0] + b"\x00\x00")])), "corrupt")


def test_bad_name_and_zero_length_entry(pki):
    img = bytearray(binfmt.image([("ca", pki.ders[0])]))
    img[1] = 0  # name "c", NUL-padded ...
    img[5] = 0x41  # ... but a byte after the NULs: not a valid name field
    fails(store_of(bytes(img)), "corrupt")
    zero = binfmt.header("z", 0)
    fails(store_of(binfmt.image([("ca", pki.ders[0])]) + zero), "corrupt")


def test_entry_name_not_text(pki):
    # Names are not used by the store; one that is not text still reads, and
    # still shows in a message.
    img = bytearray(binfmt.image([("ca", pki.ders[0]), ("xx", b"junk")]))
    img[0] = 0xFF
    assert list(store_of(bytes(img[: binfmt.HEADER_LEN + len(pki.ders[0])]))) == [pki.ders[0]]
    img[binfmt.HEADER_LEN + len(pki.ders[0])] = 0xFE
    assert "\\xfe" in fails(store_of(bytes(img)), "not_certificate")


def test_private_keys(pki):
    k = pki.key
    pkcs8 = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pkcs8_pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for data in (certs.key_der_pkcs1(k), pkcs8, certs.key_pem(k), pkcs8_pem):
        msg = fails(store_of(binfmt.image([("ca", pki.ders[0]), ("private_key", data)])), "private_key")
        assert "private_key" in msg


def test_key_bin_flashed_at_the_ca_sector(pki):
    # esp_cert_private_key.bin: a certificate and its key (what the SDK's
    # server reads), flashed where the CA store belongs.
    img = binfmt.image([("certificate", pki.ders[0]), ("private_key", certs.key_der_pkcs1(pki.key))])
    fails(store_of(img), "private_key")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"just some text\n", "not_certificate"),
        (b"\x02\x01\x00", "not_certificate"),  # DER, but not a SEQUENCE
        (b"\x30\x03\x01\x01\xff", "not_certificate"),  # SEQUENCE { BOOLEAN }
        (b"\x30\x02\x30\x00", "corrupt"),  # SEQUENCE { SEQUENCE {} }: no certificate inside
        (b"\x30\x80\x30\x00\x00\x00", "corrupt"),  # BER indefinite length
        ("pub", "not_certificate"),
    ],
)
def test_not_certificates(pki, data, reason):
    if data == "pub":
        data = pki.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fails(store_of(binfmt.image([("ca", pki.ders[0]), ("junk", data)])), reason)


def test_pem_without_end_line(pki):
    pem = pki.pems[0].split(b"-----END")[0]
    assert "END" in fails(store_of(binfmt.image([("p", pem)])), "truncated")


def test_pem_wrong_end_label(pki):
    pem = pki.pems[0].replace(b"END CERTIFICATE", b"END CERTIFICATX")
    fails(store_of(binfmt.image([("p", pem)])), "corrupt")


def test_pem_bad_base64(pki):
    lines = pki.pems[0].split(b"\n")
    lines[3] = lines[3][:10] + b"*" + lines[3][11:]
    assert "0x2a" in fails(store_of(binfmt.image([("p", b"\n".join(lines))])), "corrupt")
    # Base64 that decodes, but to a certificate 3 bytes short.
    lines = pki.pems[0].split(b"\n")
    lines[2] = lines[2][4:]
    fails(store_of(binfmt.image([("p", b"\n".join(lines))])), "truncated")


def test_pem_decodes_to_garbage(pki):
    pem = b"-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n"
    fails(store_of(binfmt.image([("p", pem)])), "not_certificate")
    empty = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
    fails(store_of(binfmt.image([("p", empty)])), "not_certificate")


def test_certificate_too_big(pki):
    names = [x509.DNSName("host-%04d.example.com" % i) for i in range(200)]
    big = certs.make_cert("big", pki.key, extensions=[(x509.SubjectAlternativeName(names), False)])
    d = certs.cert_der(big)
    assert len(d) > castore.MAX_CERT
    fails(store_of(binfmt.image([("ca", pki.ders[0]), ("big", d)])), "too_big")
    fails(store_of(binfmt.image([("big", certs.cert_pem(big))])), "too_big")


def test_flash_read_failure(pki):
    def read(off, buf):
        raise OSError(5)

    fails(castore.CAStore(read, 0x98000), "read_failed")


def test_corruption_after_a_match_still_fails(pki):
    # The issuer is the first entry, the store is corrupt after it: the first
    # use checks the whole store, so no anchor is ever handed out.
    img = binfmt.image([("ca", pki.ders[0]), ("p", pki.pems[1])])
    img = img[:-40] + b"!" + img[-39:]
    s = store_of(img)
    with pytest.raises(StoreError) as e:
        next(iter(s.issuers(*subject(pki.ders[0]))))
    assert e.value.reason == "corrupt"


# --- integrity: end to end, erased after the end, anchors' own signatures -----------


def test_header_size_agrees_with_binfmt():
    # castore reads what binfmt writes: one layout.
    assert (castore.NAME_LEN, castore.HEADER_LEN) == (binfmt.NAME_LEN, binfmt.HEADER_LEN) == (32, 34)
    assert binfmt.walk is not castore.walk and list(binfmt.walk_bytes(binfmt.entry("a", b"x"))) == [(b"a", 34, 1)]


def test_length_damaged_into_end_mark_fails_closed(pki):
    img = bytearray(binfmt.image([("a", pki.ders[0]), ("b", pki.ders[1]), ("c", pki.ders[2])]))
    assert store_of(bytes(img)).check() == 3
    # Entry b's length becomes 0xFFFF: the walk ends there; b and c would be dropped.
    off = binfmt.HEADER_LEN + len(pki.ders[0])
    img[off + binfmt.NAME_LEN : off + binfmt.HEADER_LEN] = b"\xff\xff"
    with pytest.raises(StoreError) as e:
        store_of(bytes(img)).check()
    assert e.value.reason == "corrupt" and "after the end" in str(e.value)
    # Its whole header erased too: still data after the end.
    img[off : off + binfmt.HEADER_LEN] = b"\xff" * binfmt.HEADER_LEN
    with pytest.raises(StoreError) as e:
        store_of(bytes(img)).check()
    assert e.value.reason == "corrupt"
    # The first header's length 0xFFFF over data: "empty", not "erased".
    img[binfmt.NAME_LEN : binfmt.HEADER_LEN] = b"\xff\xff"
    with pytest.raises(StoreError) as e:
        store_of(bytes(img)).check()
    assert e.value.reason == "empty"


def test_every_entry_parsed_end_to_end(pki):
    # A notAfter digit damaged in the second entry (still DER): the store fails,
    # not only that anchor.
    i = pki.ders[1].index(b"\x17\x0d") + 2
    bad = pki.ders[1][:i] + b"x" + pki.ders[1][i + 1 :]
    der.check(bad, 0, len(bad))  # well-formed TLVs all the same
    s = store_of(binfmt.image([("a", pki.ders[0]), ("b", bad)]))
    with pytest.raises(StoreError) as e:
        s.check()
    assert e.value.reason == "corrupt" and "entry b" in str(e.value)


def test_unknown_critical_extension_does_not_fail_the_store(pki):
    from cryptography.x509.oid import ObjectIdentifier

    odd = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.9"), b"\x05\x00")
    c = certs.cert_der(certs.make_cert("Odd CA", pki.key, is_ca=True, extensions=((odd, True),)))
    assert store_of(binfmt.image([("odd", c), ("a", pki.ders[0])])).check() == 2


def test_anchor_signature_checked_once_with_a_shared_list(pki, monkeypatch):
    from espconn import x509 as vx

    leaf = certs.cert_der(certs.make_cert("127.0.0.1", pki.key, issuer=pki.cas[5], issuer_key=pki.key, ips=("127.0.0.1",)))
    img = binfmt.image([("ca%d" % i, pki.ders[i]) for i in (4, 5)])
    mem, read, _ = flash(img)
    seen = []
    calls = count_rsa(monkeypatch)
    for _ in range(3):  # three connections, each opening the store anew
        vx.verify_chain([leaf], castore.CAStore(read, 0, len(mem), verified=seen), name="127.0.0.1")
    assert len(calls) == 3 + 1  # the leaf's signature each time, the anchor's once
    assert seen == [__import__("hashlib").sha256(pki.ders[5]).digest()]
    calls.clear()
    vx.verify_chain([leaf], castore.CAStore(read, 0, len(mem)), name="127.0.0.1")
    assert len(calls) == 2  # no list given: checked again


def test_damaged_anchor_in_store_not_trusted(pki):
    from espconn import x509 as vx

    root_key = certs.new_key(2048)
    root = certs.make_cert("Store pathlen root", root_key, is_ca=True, path_len=0)
    inter = certs.make_cert("Store inter", root_key, issuer=root, issuer_key=root_key, is_ca=True)
    leaf = certs.make_cert("127.0.0.1", root_key, issuer=inter, issuer_key=root_key, ips=("127.0.0.1",))
    rd = certs.cert_der(root)
    chain = [certs.cert_der(leaf), certs.cert_der(inter)]
    i = rd.index(b"\x01\x01\xff\x02\x01\x00")
    loose = rd[: i + 5] + b"\x10" + rd[i + 6 :]  # pathLenConstraint 0 -> 16: one flipped byte
    for anchor, want in ((rd, "path_len"), (loose, "bad_anchor")):
        with pytest.raises(vx.VerifyError) as e:
            vx.verify_chain(chain, store_of(binfmt.image([("root", anchor)])))
        assert e.value.reason == want


@pytest.fixture(scope="module")
def pathlen_world():
    # A store whose root (pathLenConstraint 0) must refuse leaf <- i1 <- root.
    k = certs.new_key(1024)
    root = certs.make_cert("Flip root", k, is_ca=True, path_len=0)
    i1 = certs.make_cert("Flip i1", k, issuer=root, issuer_key=k, is_ca=True)
    leaf = certs.make_cert("127.0.0.1", k, issuer=i1, issuer_key=k, ips=("127.0.0.1",))
    img = binfmt.image([("root", certs.cert_der(root))])
    return [certs.cert_der(leaf), certs.cert_der(i1)], img


@pytest.mark.slow
def test_no_single_bit_flip_in_the_store_accepts_a_refused_chain(pathlen_world):
    # Every bit of the store image, one at a time (the finding: 0 -> 16
    # in pathLenConstraint made this chain pass).
    from espconn import x509 as vx
    from espconn.errors import VerifyError

    chain, img = pathlen_world
    seen = set()
    for pos in range(len(img)):
        for bit in range(8):
            bad = bytearray(img)
            bad[pos] ^= 1 << bit
            try:
                vx.verify_chain(chain, store_of(bytes(bad)), name="127.0.0.1")
            except (VerifyError, StoreError) as e:
                seen.add(e.reason)
                continue
            raise AssertionError("accepted with bit %d of byte %d flipped" % (bit, pos))
    assert {"bad_anchor", "path_len", "corrupt"} <= seen


# --- open(): esp.flash_read, aligned ----------------------------------------------


def test_open_reads_esp_flash_aligned(pki, monkeypatch):
    img = binfmt.image([("ca%d" % i, pki.ders[i]) for i in range(2)] + [("p", pki.pems[2])])
    mem, _, _ = flash(img, base=0x98 * SECTOR, total=0x9B * SECTOR)
    calls = []

    def flash_read(off, buf):
        # The SDK's spi_flash_read works on whole words.
        assert off % 4 == 0 and len(buf) % 4 == 0
        calls.append(off)
        buf[:] = mem[off : off + len(buf)]

    monkeypatch.setitem(sys.modules, "esp", types.SimpleNamespace(flash_read=flash_read))
    s = castore.open(0x98, 3 * SECTOR)
    assert s.base == 0x98000
    assert list(s) == pki.ders[:3]
    assert min(calls) == 0x98000


# --- hypothesis: mutated images raise StoreError or yield certificates ------------


@pytest.fixture(scope="module")
def base_image(pki):
    return binfmt.image([("der", pki.ders[0]), ("pem", b"intro\n" + pki.pems[1] + pki.pems[2]), ("der2", pki.ders[3])])


def _run_store(img):
    mem, read, _ = flash(img)
    s = castore.CAStore(read, 0, len(mem))
    try:
        n = s.check()
    except StoreError as e:
        assert e.reason in ("erased", "empty", "truncated", "corrupt", "not_certificate", "private_key", "too_big")
        return None
    got = list(s)
    assert len(got) == n
    for d in got:
        io, ie, so, se = der.cert_names(d)  # a certificate's shape, nothing raised
        assert 0 < io < ie <= so < se <= len(d)
    return got


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_images(base_image, data):
    img = bytearray(base_image)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        i = data.draw(st.integers(0, len(img) - 1))
        if op == "set":
            img[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            img[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del img[i : i + data.draw(st.integers(1, 8))]
    _run_store(bytes(img))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_images(blob):
    _run_store(blob)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_pem_text(pki, data):
    pem = bytearray(pki.pems[4])
    i = data.draw(st.integers(0, len(pem) - 1))
    pem[i] = data.draw(st.sampled_from(b"-=\n\r AZaz09+/*\x00\xff"))
    got = _run_store(binfmt.image([("p", bytes(pem))]))
    if got is not None:
        # Anything accepted decodes to the original certificate (whitespace
        # moved around) or to another well-formed DER certificate.
        assert len(got) == 1


# --- with the verifier ---------------------------------------------------------------


def test_verify_chain_against_the_store(pki):
    x509mod = pytest.importorskip("espconn.x509")
    leaf = certs.make_cert("127.0.0.1", pki.key, issuer=pki.cas[100], issuer_key=pki.key, ips=("127.0.0.1",))
    ld = certs.cert_der(leaf)
    s = store_of(binfmt.image([("ca%d" % i, pki.ders[i]) for i in (1, 2, 100)]))
    x509mod.verify_chain([ld], s, name="127.0.0.1")
    s2 = store_of(binfmt.image([("ca%d" % i, pki.ders[i]) for i in (1, 2)]))
    with pytest.raises(x509mod.VerifyError) as e:
        x509mod.verify_chain([ld], s2, name="127.0.0.1")
    assert e.value.reason == "unknown_issuer"


# --- on MicroPython: same results, RAM flat in the number of CAs ---------------------

_MP = r"""
import sys, gc, json
from espconn import castore, der, x509  # x509 parses each entry in check(), as during a verify
from espconn.errors import StoreError

path, target = sys.argv[1], sys.argv[2]
f = open(path, "rb")
peak = [0]
base = [0]

def read(off, buf):
    f.seek(off)
    f.readinto(buf)
    # Peak live heap, sampled at every flash read: collect, then look.
    gc.collect()
    used = base[0] - gc.mem_free()
    if used > peak[0]:
        peak[0] = used

f.seek(0, 2)
size = f.tell()
t = open(target, "rb").read()
s0, s1 = der.cert_names(t)[2:]
gc.collect()
base[0] = gc.mem_free()
s = castore.CAStore(read, 0, size)
out = {}
try:
    out["count"] = s.check()
    found = 0
    for c in s.issuers(t, s0, s1):
        found += (c == t)
        c = None
    out["found"] = found
except StoreError as e:
    out["err"] = e.reason
    out["msg"] = str(e)
out["peak"] = peak[0]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def mpy(tmp_path_factory, firmware_mpy):
    """MICROPYPATH for the driver: it, then espconn (empty __init__) as .mpy."""
    drv = firmware_mpy.driver(tmp_path_factory.mktemp("castore_drv"), "castore_driver", _MP)
    return (drv, firmware_mpy(empty_init=True))


def _mp_store(micropython, mpy, tmp_path, img, target, name="store.bin"):
    p = tmp_path / name
    p.write_bytes(img)
    t = tmp_path / "target.der"
    t.write_bytes(target)
    # 48K: check() parses each entry with x509, loaded beside castore as in a
    # verify; on this 64-bit port loaded code takes up to about twice an
    # ESP8266's bytes.
    proc = micropython.run("import castore_driver\n", args=(p, t), path=mpy, heapsize="48K")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.micropython
def test_micropython_ram_flat_in_number_of_cas(micropython, mpy, tmp_path, pki):
    peaks = {}
    for n in (2, 32, 128):
        img = binfmt.image([("ca%03d" % i, pki.ders[i]) for i in range(n)])
        out = _mp_store(micropython, mpy, tmp_path, img, pki.ders[n - 1])
        assert out.get("count") == n and out["found"] == 1, out
        peaks[n] = out["peak"]
    print("DER store heap peak by CA count:", peaks)
    # One certificate buffer and a few small objects, whatever the count.
    assert peaks[128] - peaks[2] <= 256, peaks
    assert peaks[128] < 4096, peaks


@pytest.mark.micropython
def test_micropython_pem_store(micropython, mpy, tmp_path, pki):
    peaks = {}
    for n in (2, 32):
        # 8 certificates per PEM entry.
        entries = [("pem%d" % j, b"".join(pki.pems[j * 8 : min(n, j * 8 + 8)])) for j in range((n + 7) // 8)]
        out = _mp_store(micropython, mpy, tmp_path, binfmt.image(entries), pki.ders[n - 1])
        assert out.get("count") == n and out["found"] == 1, out
        peaks[n] = out["peak"]
    print("PEM store heap peak by CA count:", peaks)
    assert peaks[32] - peaks[2] <= 256, peaks
    assert peaks[32] < 4096, peaks


@pytest.mark.micropython
@pytest.mark.parametrize(
    "kind, reason",
    [("erased", "erased"), ("key", "private_key"), ("truncated", "truncated"), ("badpem", "corrupt"), ("text", "not_certificate"),
     ("endmark", "corrupt"), ("baddate", "corrupt")],
)  # fmt: skip
def test_micropython_errors(micropython, mpy, tmp_path, pki, kind, reason):
    if kind == "erased":
        img = b"\xff" * SECTOR
    elif kind == "key":
        img = binfmt.image([("ca", pki.ders[0]), ("private_key", certs.key_der_pkcs1(pki.key))])
    elif kind == "truncated":
        img = binfmt.image([("ca", pki.ders[0]), ("ca1", pki.ders[1])])[:-100]
    elif kind == "badpem":
        img = binfmt.image([("p", pki.pems[0].replace(b"M", b"#", 1))])
    elif kind == "endmark":  # the second entry's length damaged into the end mark
        img = bytearray(binfmt.image([("ca", pki.ders[0]), ("ca1", pki.ders[1])]))
        off = binfmt.HEADER_LEN + len(pki.ders[0]) + binfmt.NAME_LEN
        img[off : off + 2] = b"\xff\xff"
    elif kind == "baddate":  # well-formed TLVs, a notBefore digit that is not one
        i = pki.ders[1].index(b"\x17\x0d") + 2
        img = binfmt.image([("ca", pki.ders[0]), ("ca1", pki.ders[1][:i] + b"x" + pki.ders[1][i + 1 :])])
    else:
        img = binfmt.image([("t", b"hello\n")])
    out = _mp_store(micropython, mpy, tmp_path, img, pki.ders[0])
    assert out.get("err") == reason, out


@pytest.mark.micropython
def test_micropython_pem_any_line_layout(micropython, mpy, tmp_path, pki):
    # 76-character lines with CRLF, and one unbroken line: the byte-by-byte
    # decoder (not the 64-character fast path) on the board's interpreter.
    import base64

    b76 = base64.encodebytes(pki.ders[6]).replace(b"\n", b"\r\n")
    one = base64.b64encode(pki.ders[7])
    pem = (
        b"-----BEGIN CERTIFICATE-----\r\n" + b76 + b"-----END CERTIFICATE-----\r\n"
        + b"-----BEGIN CERTIFICATE-----\n" + one + b"\n-----END CERTIFICATE-----\n"
    )
    img = binfmt.image([("a", pki.ders[5]), ("p", pem)])
    assert [d for d in store_of(img)] == pki.ders[5:8]
    for target in (pki.ders[6], pki.ders[7]):
        out = _mp_store(micropython, mpy, tmp_path, img, target)
        assert out.get("count") == 3 and out["found"] == 1, out
