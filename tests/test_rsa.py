"""espconn.rsa: PKCS#1 v1.5 verification against signatures made by `cryptography`.

Signatures come from real keys; the malformed encodings are built by hand and
"signed" with the private exponent, so every rejection below is of a value
that really decrypts to the bytes named in the test.
"""

import hashlib
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa as crsa
from hypothesis import given, settings, strategies as st

from espconn import rsa
from espconn.errors import VerifyError

MSG = b"espconn: the quick brown fox signs the lazy dog"
# RFC 8017 9.2 note 1 DigestInfo prefixes, written out here independently.
SHA1_DI = bytes.fromhex("3021300906052b0e03021a05000414")
SHA256_DI = bytes.fromhex("3031300d060960864801650304020105000420")


def _key(bits):
    return crsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="module")
def keys():
    return {bits: _key(bits) for bits in (1024, 2048, 4096)}


@pytest.fixture(scope="module")
def key512(tmp_path_factory):
    # cryptography refuses to generate 512-bit keys; openssl still makes them.
    path = tmp_path_factory.mktemp("k512") / "k.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(path), "512"], check=True, capture_output=True)
    return serialization.load_pem_private_key(path.read_bytes(), None)


def pub(key):
    nums = key.public_key().public_numbers()
    k = (key.key_size + 7) // 8
    return nums.n.to_bytes(k, "big"), nums.e


def raw_sign(key, em):
    """Apply the private exponent to an arbitrary encoded message."""
    priv = key.private_numbers()
    n = priv.public_numbers.n
    k = (key.key_size + 7) // 8
    return pow(int.from_bytes(em, "big"), priv.d, n).to_bytes(k, "big")


def encode(k, digest_info, pad_byte=0xFF, block=1, sep=0, pad_len=None, trailer=b""):
    """EM = 00 block PS sep T trailer, PS filling the rest unless pad_len is given."""
    body = digest_info + trailer
    if pad_len is None:
        pad_len = k - 3 - len(body)
    em = bytes([0, block]) + bytes([pad_byte]) * pad_len + bytes([sep]) + body
    assert len(em) <= k
    return em.rjust(k, b"\0")


def check(n, e, sig, digest, hid):
    """None if accepted, else the reason."""
    try:
        rsa.verify(n, e, sig, digest, hid)
    except VerifyError as exc:
        return exc.reason
    return None


# --- modexp -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**600),
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=1, max_value=2**600),
)
def test_modexp_matches_pow(b, e, m):
    assert rsa.modexp(b, e, m) == pow(b, e, m)


def test_modexp_edges():
    assert rsa.modexp(5, 0, 7) == 1
    assert rsa.modexp(5, 1, 7) == 5
    assert rsa.modexp(12, 65537, 1) == 0
    assert rsa.modexp(0, 65537, 97) == 0
    with pytest.raises(ValueError):
        rsa.modexp(2, 3, 0)


def test_verify_does_not_use_three_argument_pow(keys, monkeypatch):
    # The ESP8266 port has no pow(b, e, m): make any call to it fail here.
    import builtins

    real = builtins.pow

    def two_arg_pow(*args):
        assert len(args) == 2, "three-argument pow() used"
        return real(*args)

    key = keys[2048]
    sig = key.sign(MSG, padding.PKCS1v15(), hashes.SHA256())
    n, e = pub(key)
    monkeypatch.setattr(builtins, "pow", two_arg_pow)
    assert check(n, e, sig, hashlib.sha256(MSG).digest(), rsa.SHA256) is None
    assert rsa.modexp(3, 65537, 2**127 - 1) == real(3, 65537, 2**127 - 1)


def test_bits():
    assert rsa.bits(b"") == 0
    assert rsa.bits(b"\0\0") == 0
    assert rsa.bits(b"\x01") == 1
    assert rsa.bits(b"\x00\x80\x00") == 16
    assert rsa.bits(b"\x7f" + b"\0" * 127) == 1023


# --- genuine signatures ---------------------------------------------------------


@pytest.mark.parametrize("bits", [1024, 2048, 4096])
@pytest.mark.parametrize("hname", ["sha1", "sha256"])
def test_accepts_cryptography_signatures(keys, bits, hname):
    key = keys[bits]
    halg, hid = (hashes.SHA1(), rsa.SHA1) if hname == "sha1" else (hashes.SHA256(), rsa.SHA256)
    sig = key.sign(MSG, padding.PKCS1v15(), halg)
    n, e = pub(key)
    digest = hashlib.new(hname, MSG).digest()
    assert check(n, e, sig, digest, hid) is None
    # A DER INTEGER's leading sign byte and memoryviews are both fine.
    assert check(memoryview(b"\0" + n)[0:], e, memoryview(sig), digest, hid) is None
    # Another message, the other hash, a flipped bit: all rejected.
    other = hashlib.new(hname, MSG + b"!").digest()
    assert check(n, e, sig, other, hid) == "bad_signature"
    if hid == rsa.SHA1:
        assert check(n, e, sig, hashlib.sha256(MSG).digest(), rsa.SHA256) == "bad_signature"
    else:
        assert check(n, e, sig, hashlib.sha1(MSG).digest(), rsa.SHA1) == "bad_signature"
    for pos in (0, len(sig) // 2, len(sig) - 1):
        bad = bytearray(sig)
        bad[pos] ^= 0x01
        assert check(n, e, bytes(bad), digest, hid) == "bad_signature"


def test_wrong_key_rejected(keys):
    sig = keys[2048].sign(MSG, padding.PKCS1v15(), hashes.SHA256())
    n, e = pub(_key(2048))
    assert check(n, e, sig, hashlib.sha256(MSG).digest(), rsa.SHA256) == "bad_signature"


def test_signature_length_must_equal_modulus(keys):
    key = keys[1024]
    n, e = pub(key)
    d = hashlib.sha256(MSG).digest()
    sig = key.sign(MSG, padding.PKCS1v15(), hashes.SHA256())
    assert check(n, e, b"\0" + sig, d, rsa.SHA256) == "bad_signature"
    assert check(n, e, sig[1:], d, rsa.SHA256) == "bad_signature"
    # A value >= n is not a signature even if it reduces to one.
    big = (int.from_bytes(sig, "big") + int.from_bytes(n, "big"))
    if big < 1 << 1024:
        assert check(n, e, big.to_bytes(128, "big"), d, rsa.SHA256) == "bad_signature"
    assert check(n, e, n, d, rsa.SHA256) == "bad_signature"


def test_digest_length_and_unknown_hash(keys):
    n, e = pub(keys[1024])
    sig = keys[1024].sign(MSG, padding.PKCS1v15(), hashes.SHA256())
    assert check(n, e, sig, hashlib.sha256(MSG).digest()[:20], rsa.SHA256) == "bad_signature"
    assert check(n, e, sig, hashlib.sha256(MSG).digest(), 99) == "unsupported_algorithm"


# --- hand-made encodings --------------------------------------------------------


def test_hand_encoding_matches_cryptography(keys):
    # Sanity check of the test's own encoder: it reproduces the library's bytes.
    key = keys[1024]
    d = hashlib.sha256(MSG).digest()
    assert raw_sign(key, encode(128, SHA256_DI + d)) == key.sign(MSG, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize(
    "variant",
    [
        "pad_fe",
        "block_2",
        "block_0",
        "sep_1",
        "short_pad",
        "no_null_params",
        "trailing_garbage",
        "digest_as_sha1_oid",
        "leading_nonzero",
        "ber_long_length",
    ],
)
def test_rejects_malformed_encodings(keys, variant):
    key = keys[2048]
    k = 256
    n, e = pub(key)
    d = hashlib.sha256(MSG).digest()
    good = SHA256_DI + d
    if variant == "pad_fe":
        em = encode(k, good, pad_byte=0xFE)
    elif variant == "block_2":
        em = encode(k, good, block=2)
    elif variant == "block_0":
        em = encode(k, good, block=0)
    elif variant == "sep_1":
        em = encode(k, good, sep=1)
    elif variant == "short_pad":
        # 7 bytes of FF then the digest, zeros after: too short padding and trailing bytes.
        em = (bytes([0, 1]) + b"\xff" * 7 + b"\0" + good).ljust(k, b"\0")
    elif variant == "no_null_params":
        di = bytes.fromhex("302f300b0609608648016503040201") + b"\x04\x20"
        em = encode(k, di + d)
    elif variant == "trailing_garbage":
        # Bleichenbacher 2006: the digest early, garbage filling the rest.
        em = encode(k, good, pad_len=8, trailer=b"\xaa" * (k - 3 - 8 - len(good)))
    elif variant == "digest_as_sha1_oid":
        em = encode(k, SHA1_DI[:-1] + b"\x20" + d)
    elif variant == "leading_nonzero":
        em = b"\x01" + encode(k, good)[1:]
        if int.from_bytes(em, "big") >= int.from_bytes(n, "big"):
            pytest.skip("encoded value above this modulus")
    elif variant == "ber_long_length":
        di = b"\x30\x81\x31" + SHA256_DI[2:]
        em = encode(k, di + d)
    assert len(em) == k
    sig = raw_sign(key, em)
    assert check(n, e, sig, d, rsa.SHA256) == "bad_signature"


def test_sha1_minimum_padding_accepted(keys):
    # 1024-bit + SHA-1 has the most padding; the minimum (8) is legal at 512 bits.
    key = keys[1024]
    d = hashlib.sha1(MSG).digest()
    n, e = pub(key)
    assert check(n, e, raw_sign(key, encode(128, SHA1_DI + d)), d, rsa.SHA1) is None


def test_512_bit_key(key512):
    n, e = pub(key512)
    assert rsa.check_key(n, e, 512) == 512
    with pytest.raises(VerifyError) as ei:
        rsa.check_key(n, e)
    assert ei.value.reason == "weak_key"
    for halg, hid, name in ((hashes.SHA1(), rsa.SHA1, "sha1"), (hashes.SHA256(), rsa.SHA256, "sha256")):
        sig = key512.sign(MSG, padding.PKCS1v15(), halg)
        assert check(n, e, sig, hashlib.new(name, MSG).digest(), hid) is None


# --- key checks -----------------------------------------------------------------


def test_check_key(keys):
    n, e = pub(keys[2048])
    assert rsa.check_key(n, e) == 2048
    assert rsa.check_key(b"\0" + n, e, 2048) == 2048
    cases = [
        ((n, e, 2049), "weak_key"),
        ((n, 1), "weak_key"),
        ((n, 2), "weak_key"),
        ((n, 65536), "weak_key"),
        ((n[:-1] + bytes([n[-1] & 0xFE]), 65537), "weak_key"),
        ((n, (1 << 32) + 1), "unsupported_algorithm"),
        ((b"\x01" + b"\xff" * 512, 65537), "unsupported_algorithm"),
        ((b"", 65537), "weak_key"),
    ]
    for args, reason in cases:
        with pytest.raises(VerifyError) as ei:
            rsa.check_key(*args)
        assert ei.value.reason == reason, args[1:]
    assert rsa.check_key(b"\xff" * 512, 3) == 4096


# --- the same on MicroPython -----------------------------------------------------

MP_SCRIPT = r"""
import sys, gc, binascii, time
from espconn import rsa
from espconn.errors import VerifyError
with open(sys.argv[1]) as f:
    for line in f:
        want, n, e, sig, dig, hid = line.split()
        n = binascii.unhexlify(n); sig = binascii.unhexlify(sig); dig = binascii.unhexlify(dig)
        gc.collect()
        t0 = time.ticks_us()
        try:
            rsa.check_key(n, int(e), 512)
            rsa.verify(memoryview(n), int(e), memoryview(sig), dig, int(hid))
            got = "ok"
        except VerifyError as exc:
            got = exc.reason
        dt = time.ticks_diff(time.ticks_us(), t0)
        print(got, len(n) * 8, dt)
"""


def test_micropython_same_outcomes(keys, key512, micropython, firmware_mpy, tmp_path):
    rows = []
    for key in (keys[1024], keys[2048], keys[4096], key512):
        n, e = pub(key)
        for halg, hid, name in ((hashes.SHA1(), rsa.SHA1, "sha1"), (hashes.SHA256(), rsa.SHA256, "sha256")):
            sig = key.sign(MSG, padding.PKCS1v15(), halg)
            d = hashlib.new(name, MSG).digest()
            rows.append(("ok", n, e, sig, d, hid))
            bad = bytearray(sig)
            bad[-1] ^= 0x80
            rows.append(("bad_signature", n, e, bytes(bad), d, hid))
    k2048 = keys[2048]
    n, e = pub(k2048)
    d = hashlib.sha256(MSG).digest()
    rows.append(("bad_signature", n, e, raw_sign(k2048, encode(256, SHA256_DI + d, pad_byte=0xFE)), d, rsa.SHA256))
    rows.append(("bad_signature", n, e, raw_sign(k2048, encode(256, SHA256_DI + d, block=2)), d, rsa.SHA256))
    rows.append(("weak_key", n, 4, raw_sign(k2048, encode(256, SHA256_DI + d)), d, rsa.SHA256))
    rows.append(("unsupported_algorithm", n, 1 << 40 | 1, raw_sign(k2048, encode(256, SHA256_DI + d)), d, rsa.SHA256))
    path = tmp_path / "cases.txt"
    path.write_text("".join("%s %s %d %s %s %d\n" % (w, n.hex(), e, s.hex(), d.hex(), h) for w, n, e, s, d, h in rows))
    # Loaded as .mpy, as the board does (compiling source would need more heap).
    # The package's __init__ is empty: the verifier alone is measured.  RSA lives
    # in espconn.x509 (the whole verifier loads), and RSA-4096 needs 1 KiB pieces
    # on this 64-bit port: 48K, as test_x509's RSA-2048 chains.
    drv = firmware_mpy.driver(tmp_path / "drv", "rsa_cases", MP_SCRIPT)
    out = micropython.run("import rsa_cases\n", args=(path,), path=(drv, firmware_mpy(empty_init=True)), heapsize="48K")
    out = out.stdout.split("\n")
    got = [line.split() for line in out if line.strip()]
    assert [g[0] for g in got] == [r[0] for r in rows]
    # And CPython agrees line by line.
    for w, n, e, s, d, h in rows:
        try:
            rsa.check_key(n, e, 512)
            rsa.verify(n, e, s, d, h)
            res = "ok"
        except VerifyError as exc:
            res = exc.reason
        assert res == w
    for g in got:
        if g[0] == "ok":
            print("micropython verify RSA-%s: %.1f ms" % (g[1], int(g[2]) / 1000))
