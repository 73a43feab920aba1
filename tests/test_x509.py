"""espconn.x509.verify_chain on real chains (espssl.certs / cryptography and the openssl CLI).

Every reason code has a case that produces it; expiry is tested one second
either side of each bound; "now" is always injected (pki.NOW, or taken from
the certificate for openssl-made ones): these tests never read the clock.  The
main cases run again on the MicroPython unix port, loaded as .mpy, and must
give the same outcome: with RSA-1024 keys under the ESP8266's 38 KiB heap, and
with RSA-2048 under 48 KiB (the 64-bit port's code objects take about twice
the ESP8266's RAM; RSA-2048 fits from about 40 KiB there).
"""

import calendar
import datetime
import hashlib
import pathlib

import pytest
from conftest import count_rsa
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ObjectIdentifier
from hypothesis import HealthCheck, given, settings, strategies as st

import pki
from espconn import der as espconn_der, x509
from espconn.errors import VerifyError
from pki import CA, NOW, chain

UTC = datetime.timezone.utc
DAY = 86400


def dt(ts):
    return datetime.datetime.fromtimestamp(ts, UTC)


def reason(certs, anchors, now=NOW, name=None, policy=None):
    """None when verify_chain accepts, else its reason code."""
    try:
        x509.verify_chain(certs, anchors, now=now, name=name, policy=policy)
    except VerifyError as exc:
        assert exc.msg and isinstance(exc.reason, str)
        return exc.reason
    return None


# --- the PKI used by most tests (module scope: keys are slow) -------------------


class World:
    pass


def _world(bits):
    w = World()
    w.bits = bits
    w.root = CA("espssl root", bits=bits)
    w.inter = w.root.child_ca("espssl intermediate", bits=bits)
    w.leaf = w.inter.issue("127.0.0.1", "esp.example.test", "*.dev.example.test", bits=bits)
    w.direct = w.root.issue("localhost", bits=bits)
    w.other_root = CA("espssl other root", bits=bits)
    # Same subject as the root, another key: an impostor issuer.
    w.fake_root = CA("espssl root", fresh_key=True, bits=bits)
    return w


@pytest.fixture(scope="module")
def w():
    return _world(2048)


# --- accepted chains -------------------------------------------------------------


def test_accepts_leaf_intermediate_root(w):
    assert reason(chain(w.leaf, w.inter), [w.root.der]) is None
    assert reason(chain(w.leaf, w.inter), [w.root.der], name="127.0.0.1") is None
    assert reason(chain(w.leaf, w.inter), [w.root.der], name="ESP.example.test.") is None
    assert reason(chain(w.leaf, w.inter), [w.root.der], name="a.dev.example.test") is None
    assert reason(chain(w.direct), [w.root.der], name="localhost") is None


def test_accepts_intermediates_in_any_order_and_extras(w):
    extra = w.other_root.issue("unrelated.test")
    assert reason(chain(w.leaf, extra, w.root, w.inter), [w.root.der]) is None
    assert reason(chain(w.leaf, w.root, w.inter), [w.other_root.der, w.root.der]) is None


def test_anchor_need_not_be_self_signed(w):
    # The intermediate itself is trusted: the chain stops there, root unknown.
    assert reason(chain(w.leaf), [w.inter.der]) is None
    assert reason(chain(w.leaf, w.inter), [w.inter.der]) is None


def test_anchor_inputs(w):
    certs = chain(w.leaf, w.inter)
    assert reason(certs, iter([w.other_root.der, w.root.der])) is None
    assert reason(certs, (bytearray(w.root.der),)) is None
    assert reason([memoryview(c) for c in certs], [memoryview(w.root.der)]) is None
    assert reason(certs, []) == "unknown_issuer"


def test_self_signed_leaf_trusted_as_itself():
    ss = CA("selfsigned.test", is_ca=False)
    assert reason(chain(ss), [ss.der]) is None
    assert reason(chain(ss), []) == "unknown_issuer"


def test_fingerprints(w):
    assert x509.cert_sha256(w.leaf.der) == hashlib.sha256(w.leaf.der).digest()
    spki = w.leaf.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert x509.spki_sha256(w.leaf.der) == hashlib.sha256(spki).digest()
    assert x509.spki_sha256(memoryview(w.leaf.der)) == hashlib.sha256(spki).digest()


# --- dates -----------------------------------------------------------------------


def _dated(w):
    nb, na = pki.NOW - 10 * DAY, pki.NOW + 10 * DAY
    b = w.bits
    d = World()
    d.nb, d.na = nb, na
    d.leaf = w.inter.issue("127.0.0.1", not_before=dt(nb), not_after=dt(na), bits=b)
    d.inter = w.root.child_ca("dated intermediate", not_before=dt(nb), not_after=dt(na), bits=b)
    d.inter_leaf = d.inter.issue("127.0.0.1", bits=b)
    d.root = CA("dated root", not_before=dt(nb), not_after=dt(na), bits=b)
    d.root_leaf = d.root.issue("127.0.0.1", bits=b)
    return d


@pytest.fixture(scope="module")
def dated(w):
    return _dated(w)


@pytest.mark.parametrize("which", ["leaf", "inter", "root"])
def test_validity_bounds_one_second_either_side(w, dated, which):
    certs, anchors = {
        "leaf": (chain(dated.leaf, w.inter), [w.root.der]),
        "inter": (chain(dated.inter_leaf, dated.inter), [w.root.der]),
        "root": (chain(dated.root_leaf), [dated.root.der]),
    }[which]
    assert reason(certs, anchors, now=dated.nb - 1) == "not_yet_valid"
    assert reason(certs, anchors, now=dated.nb) is None
    assert reason(certs, anchors, now=dated.nb + 1) is None
    assert reason(certs, anchors, now=dated.na - 1) is None
    assert reason(certs, anchors, now=dated.na) is None
    assert reason(certs, anchors, now=dated.na + 1) == "expired"


def test_generalized_time_up_to_9999(w):
    # cryptography writes GeneralizedTime from 2050 on; 9999-12-31T23:59:59Z is the largest.
    end = calendar.timegm((9999, 12, 31, 23, 59, 59))
    start = calendar.timegm((2049, 12, 31, 23, 59, 59))
    root = CA("far root", not_after=dt(end))
    far = root.issue("127.0.0.1", not_before=dt(start), not_after=dt(end))
    assert b"\x18\x0f99991231235959Z" in far.der and b"\x17\x0d491231235959Z" in far.der
    assert reason(chain(far), [root.der], now=end) is None
    assert reason(chain(far), [root.der], now=end + 1) == "expired"
    assert reason(chain(far), [root.der], now=start - 1) == "not_yet_valid"
    assert reason(chain(far), [root.der], now=start) is None


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59)))
def test_civil_to_unix_matches_calendar(d):
    t = d.replace(microsecond=0)
    assert x509.civil_to_unix(t.year, t.month, t.day, t.hour, t.minute, t.second) == calendar.timegm(t.timetuple())


@pytest.mark.parametrize(
    "ymd", [(2027, 2, 29), (2100, 2, 29), (2027, 4, 31), (2027, 13, 1), (2027, 0, 1), (2027, 1, 0)]
)
def test_civil_to_unix_rejects_impossible_dates(ymd):
    with pytest.raises(ValueError):
        x509.civil_to_unix(*ymd, 0, 0, 0)
    assert x509.civil_to_unix(2028, 2, 29, 0, 0, 0) == calendar.timegm((2028, 2, 29, 0, 0, 0))
    assert x509.civil_to_unix(2000, 2, 29, 0, 0, 0) == calendar.timegm((2000, 2, 29, 0, 0, 0))


def _set_time(der, old, new):
    assert der.count(old) == 1
    return der.replace(old, new)


def test_time_encodings_parsed_strictly(w):
    # Rewrite the (signed) notBefore: the signature no longer matches, so
    # anything but a strict parse failure shows up as bad_signature.
    leaf = w.root.issue("127.0.0.1", not_before=dt(calendar.timegm((2026, 1, 1, 0, 0, 0))))
    der = leaf.der
    old = b"\x17\x0d260101000000Z"
    assert reason(chain(_set_time(der, old, b"\x17\x0d260101000001Z")), [w.root.der]) == "bad_signature"
    for bad in (b"\x17\x0d260101000000X", b"\x17\x0d2601010000a0Z", b"\x17\x0d260230000000Z",
                b"\x17\x0d260101240000Z", b"\x17\x0d260101006000Z", b"\x17\x0d260101000060Z",
                b"\x04\x0d260101000000Z", b"\x18\x0d260101000000Z"):  # fmt: skip
        assert reason(chain(_set_time(der, old, bad)), [w.root.der]) == "malformed", bad


@pytest.fixture(scope="module")
def old_cert(w):
    # Expired well before the firmware's release date.
    return w.root.issue("127.0.0.1", not_before=dt(x509.RELEASE_TIME - 400 * DAY),
                        not_after=dt(x509.RELEASE_TIME - 1))  # fmt: skip


def test_unset_clock_default_refuses_certs_expired_before_release(w, old_cert):
    # The clock reads 1970 + 1000 s (never set): only notAfter >= release is checked.
    unset = x509.Policy(clock=lambda: 1000)
    assert reason(chain(old_cert), [w.root.der], now=None, policy=unset) == "expired"
    future = w.root.issue("127.0.0.1", not_before=dt(x509.RELEASE_TIME + 300 * DAY))
    assert reason(chain(future), [w.root.der], now=None, policy=unset) is None
    assert reason(chain(w.leaf, w.inter), [w.root.der], now=None, policy=unset) is None
    # Release bound inclusive: notAfter == release is accepted, release - 1 is not.
    edge = x509.Policy(clock=lambda: 1000, release=x509.RELEASE_TIME - 1)
    assert reason(chain(old_cert), [w.root.der], now=None, policy=edge) is None
    # The ESP8266's boot clock (2000-01-01) is "unset" too.
    boot = x509.Policy(clock=lambda: 946684800)
    assert reason(chain(old_cert), [w.root.der], now=None, policy=boot) == "expired"


def test_valid_clock_checks_the_full_window(w, old_cert):
    future = w.root.issue("127.0.0.1", not_before=dt(x509.RELEASE_TIME + 300 * DAY))
    at = x509.RELEASE_TIME + 10 * DAY
    valid = x509.Policy(clock=lambda: at)
    assert reason(chain(future), [w.root.der], now=None, policy=valid) == "not_yet_valid"
    assert reason(chain(old_cert), [w.root.der], now=None, policy=valid) == "expired"
    # The first second the clock counts as set is the release date itself.
    nb = x509.RELEASE_TIME + 1
    soon = w.root.issue("127.0.0.1", not_before=dt(nb))
    edge = x509.Policy(clock=lambda: x509.RELEASE_TIME)
    assert reason(chain(soon), [w.root.der], now=None, policy=edge) == "not_yet_valid"
    before = x509.Policy(clock=lambda: x509.RELEASE_TIME - 1)
    assert reason(chain(soon), [w.root.der], now=None, policy=before) is None


def test_unset_clock_modes(w, old_cert):
    skip = x509.Policy(clock=lambda: 0, unset_clock="skip")
    assert reason(chain(old_cert), [w.root.der], now=None, policy=skip) is None
    refuse = x509.Policy(clock=lambda: 0, unset_clock="refuse")
    assert reason(chain(w.leaf, w.inter), [w.root.der], now=None, policy=refuse) == "clock_unset"
    # An explicit now always wins over the policy's clock.
    assert reason(chain(w.leaf, w.inter), [w.root.der], now=NOW, policy=refuse) is None
    with pytest.raises(ValueError):
        x509.Policy(unset_clock="trust")


def test_unix_time_epochs(monkeypatch):
    # The clock is faked: unix ports count from 1970, the ESP8266 from 2000.
    import time

    monkeypatch.setattr(time, "time", lambda: 1000.5)
    assert x509.unix_time() == 1000
    real_gmtime = time.gmtime
    monkeypatch.setattr(time, "gmtime", lambda t=None: real_gmtime(t + 946684800 if t is not None else t))
    assert x509.unix_time() == 1000 + 946684800
    # a reading taken earlier converts as it is (check.run relies on it: no second read that may tick)
    assert x509.unix_time(7) == 7 + 946684800


# --- names -----------------------------------------------------------------------


def test_name_mismatch(w):
    certs = chain(w.leaf, w.inter)
    anchors = [w.root.der]
    assert reason(certs, anchors, name="127.0.0.2") == "name_mismatch"
    assert reason(certs, anchors, name="other.example.test") == "name_mismatch"
    assert reason(certs, anchors, name="a.b.dev.example.test") == "name_mismatch"
    assert reason(certs, anchors, name="dev.example.test") == "name_mismatch"
    assert reason(certs, anchors, name="::1") == "name_mismatch"


def test_ipv6_and_dns_only(w):
    v6 = w.root.issue("::1", "localhost")
    assert reason(chain(v6), [w.root.der], name="::1") is None
    assert reason(chain(v6), [w.root.der], name="0:0:0:0:0:0:0:1") is None
    assert reason(chain(v6), [w.root.der], name="127.0.0.1") == "name_mismatch"
    # An IP written as a DNS SAN entry does not match an IP.
    dns_ip = w.root.issue("localhost", cn="127.0.0.1")
    assert reason(chain(dns_ip), [w.root.der], name="127.0.0.1") == "name_mismatch"


def test_cn_fallback_only_without_san_and_when_enabled(w):
    legacy = w.root.issue(cn="127.0.0.1", san=False)
    fb = x509.Policy(cn_fallback=True)
    assert reason(chain(legacy), [w.root.der], name="127.0.0.1") == "name_mismatch"
    assert reason(chain(legacy), [w.root.der], name="127.0.0.1", policy=fb) is None
    assert reason(chain(legacy), [w.root.der], name="127.0.0.2", policy=fb) == "name_mismatch"
    host = w.root.issue(cn="esp.example.test", san=False)
    assert reason(chain(host), [w.root.der], name="ESP.example.test", policy=fb) is None
    assert reason(chain(host), [w.root.der], name="x.example.test", policy=fb) == "name_mismatch"
    # With a SAN the CN is never used, fallback or not.
    san = w.root.issue("localhost", cn="127.0.0.1")
    assert reason(chain(san), [w.root.der], name="127.0.0.1", policy=fb) == "name_mismatch"


# --- CA flags, path length, key usage --------------------------------------------


def test_not_a_ca(w):
    not_ca = w.root.child_ca("not a CA", is_ca=False)
    assert reason(chain(not_ca.issue("127.0.0.1"), not_ca), [w.root.der]) == "not_a_ca"
    # A leaf (no cA) used as an issuer.
    by_leaf = pki.CA.issue(pki.Cert(w.direct.cert, w.direct.key), "127.0.0.1")
    assert reason(chain(by_leaf, w.direct), [w.root.der]) == "not_a_ca"
    anchor_not_ca = CA("anchor not a CA", is_ca=False)
    assert reason(chain(anchor_not_ca.issue("127.0.0.1")), [anchor_not_ca.der]) == "not_a_ca"


def test_anchor_without_basic_constraints(tmp_path):
    sdk = pki.makefile_sh(tmp_path)
    now = pki.not_before(sdk["server"]) + DAY
    assert reason([sdk["server"]], [sdk["ca"]], now=now) is None
    strict = x509.Policy(anchor_without_ca=False)
    assert reason([sdk["server"]], [sdk["ca"]], now=now, policy=strict) == "not_a_ca"
    # A sent intermediate without basicConstraints is never a CA.
    assert reason([sdk["server"], sdk["ca"]], [], now=now) == "not_a_ca"


def test_path_len(w):
    root0 = CA("pathlen 0 root", path_len=0)
    i1 = root0.child_ca("pathlen i1")
    assert reason(chain(root0.issue("127.0.0.1")), [root0.der]) is None
    assert reason(chain(i1.issue("127.0.0.1"), i1), [root0.der]) == "path_len"
    root1 = CA("pathlen 1 root", path_len=1)
    a = root1.child_ca("pathlen a")
    b = a.child_ca("pathlen b")
    assert reason(chain(a.issue("127.0.0.1"), a), [root1.der]) is None
    assert reason(chain(b.issue("127.0.0.1"), b, a), [root1.der]) == "path_len"
    # On an intermediate too.
    a0 = w.root.child_ca("pathlen a0", path_len=0)
    b0 = a0.child_ca("pathlen b0")
    assert reason(chain(a0.issue("127.0.0.1"), a0), [w.root.der]) is None
    assert reason(chain(b0.issue("127.0.0.1"), b0, a0), [w.root.der]) == "path_len"


def test_key_usage(w):
    ku = cx509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    no_sign = w.root.child_ca("ku without keyCertSign", key_usage=ku)
    assert reason(chain(no_sign.issue("127.0.0.1"), no_sign), [w.root.der]) == "key_usage"
    anchor = CA("ku anchor", key_usage=ku)
    assert reason(chain(anchor.issue("127.0.0.1")), [anchor.der]) == "key_usage"


# --- signatures, algorithms, keys --------------------------------------------------


def test_bad_signature(w):
    forged = w.fake_root.issue("127.0.0.1")
    assert reason(chain(forged), [w.root.der]) == "bad_signature"
    # One byte of the signed subject changed (same length, still DER).
    der = w.leaf.der
    pos = der.index(b"esp.example.test")
    tampered = der[:pos] + b"E" + der[pos + 1 :]
    assert reason(chain(tampered, w.inter), [w.root.der]) == "bad_signature"
    sig = bytearray(w.leaf.der)
    sig[-1] ^= 1
    assert reason(chain(bytes(sig), w.inter), [w.root.der]) == "bad_signature"


def test_impostor_anchor_does_not_hide_the_real_one(w):
    # Both anchors carry the subject "espssl root"; the impostor fails, the real one verifies.
    assert reason(chain(w.leaf, w.inter), [w.fake_root.der, w.root.der]) is None
    assert reason(chain(w.leaf, w.inter), [w.fake_root.der]) == "bad_signature"


@pytest.mark.parametrize("hname", ["sha384", "sha512", "sha224"])
def test_unsupported_hash(w, hname):
    leaf = w.root.issue("127.0.0.1", hash_name=hname)
    assert reason(chain(leaf), [w.root.der]) == "unsupported_algorithm"


def test_ecdsa_unsupported(w):
    ec_root = CA("ec root", key=pki.ec_key())
    assert reason(chain(ec_root.issue("127.0.0.1")), [ec_root.der]) == "unsupported_algorithm"
    ec_leaf = w.root.issue("127.0.0.1", key=pki.ec_key())
    assert reason(chain(ec_leaf), [w.root.der]) == "unsupported_algorithm"


def test_rsa_pss_unsupported(w):
    leaf_key = pki.key(2048)
    cert = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(cx509.oid.NameOID.COMMON_NAME, "pss")]))
        .issuer_name(w.root.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(7)
        .not_valid_before(pki.VALID_FROM)
        .not_valid_after(pki.VALID_TO)
        .sign(w.root.key, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 32))
    )
    assert reason([cert.public_bytes(serialization.Encoding.DER)], [w.root.der]) == "unsupported_algorithm"


def test_sha1_policy(w):
    s1 = w.root.issue("127.0.0.1", hash_name="sha1")
    assert reason(chain(s1), [w.root.der]) is None
    assert reason(chain(s1), [w.root.der], policy=x509.Policy(allow_sha1=False)) == "weak_hash"


def test_weak_key(w):
    k1024 = w.root.issue("127.0.0.1", bits=1024)
    assert reason(chain(k1024), [w.root.der]) is None
    assert reason(chain(k1024), [w.root.der], policy=x509.Policy(min_rsa_bits=2048)) == "weak_key"
    root1024 = CA("1024 root", bits=1024)
    assert reason(chain(root1024.issue("127.0.0.1")), [root1024.der], policy=x509.Policy(min_rsa_bits=2048)) == "weak_key"
    with pytest.raises(ValueError):
        x509.Policy(min_rsa_bits=256)


def test_512_bit_leaf_from_openssl(tmp_path, w):
    sdk = pki.makefile_sh(tmp_path, bits=512)
    now = pki.not_before(sdk["server"]) + DAY
    assert reason([sdk["server"]], [sdk["ca"]], now=now) == "weak_key"
    assert reason([sdk["server"]], [sdk["ca"]], now=now, policy=x509.Policy(min_rsa_bits=512)) is None


# --- extensions ---------------------------------------------------------------------

_PRIVATE_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1.1")


def test_unknown_critical_extension(w):
    ext = cx509.UnrecognizedExtension(_PRIVATE_OID, b"\x05\x00")
    crit = w.root.issue("127.0.0.1", extensions=((ext, True),))
    assert reason(chain(crit), [w.root.der]) == "unknown_critical_extension"
    plain = w.root.issue("127.0.0.1", extensions=((ext, False),))
    assert reason(chain(plain), [w.root.der]) is None
    nc = cx509.NameConstraints(permitted_subtrees=[cx509.DNSName("example.test")], excluded_subtrees=None)
    ca_nc = w.root.child_ca("name constrained", extensions=((nc, True),))
    assert reason(chain(ca_nc.issue("127.0.0.1"), ca_nc), [w.root.der]) == "unknown_critical_extension"
    eku = cx509.ExtendedKeyUsage([cx509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    known = w.root.issue("127.0.0.1", extensions=((eku, True),))
    assert reason(chain(known), [w.root.der]) is None


# --- structure and bounds ------------------------------------------------------------


def test_malformed(w):
    der = w.leaf.der
    assert reason([], [w.root.der]) == "malformed"
    assert reason([der[:-1], w.inter.der], [w.root.der]) == "malformed"
    assert reason([der + b"\0", w.inter.der], [w.root.der]) == "malformed"
    assert reason([b"", w.inter.der], [w.root.der]) == "malformed"
    assert reason([b"\x30\x84\xff\xff\xff\xff" + der[4:]], [w.root.der]) == "malformed"
    # A malformed sent intermediate that could be the issuer, and nothing else.
    assert reason([der, w.inter.der[:100]], [w.root.der]) == "malformed"


def test_chain_too_long(w):
    cas = [w.root]
    for i in range(7):
        cas.append(cas[-1].child_ca("deep %d" % i))
    leaf = cas[-1].issue("127.0.0.1")
    sent = chain(leaf, *reversed(cas[1:]))
    assert len(sent) == 8
    # Default max_chain 8: leaf + 6 intermediates + root fits, one more does not.
    assert reason(sent[:7], [cas[1].der]) is None
    assert reason(sent, [w.root.der]) == "chain_too_long"  # 8 sent, path of 9
    assert reason(sent + [w.other_root.der], [w.root.der]) == "chain_too_long"  # 9 sent
    assert reason(sent, [w.root.der], policy=x509.Policy(max_chain=9)) is None
    # Fewer sent than the limit, but the path needs more.
    assert reason(sent[:3], [cas[5].der], policy=x509.Policy(max_chain=3)) == "chain_too_long"
    assert reason(sent[:3], [cas[5].der], policy=x509.Policy(max_chain=4)) is None


def test_many_same_named_candidates_bounded(w):
    # Three sent "intermediates" with the issuer's name but wrong keys: each
    # costs one signature check; all fail at the same depth, the first reason sticks.
    fakes = [w.root.child_ca("espssl intermediate", fresh_key=(i == 0)) for i in range(3)]
    assert reason(chain(w.leaf, *fakes), []) == "bad_signature"


def test_signature_checks_are_bounded(w, monkeypatch):
    # A hostile store: 20 anchors named like the root, wrong keys, the real one
    # last.  At most 2 * max_chain + 2 RSA operations run (each impostor's own
    # signature is good, the leaf's is not), then it gives up.
    impostors = [CA("espssl root", bits=1024).der for _ in range(20)]
    calls = count_rsa(monkeypatch)
    assert reason(chain(w.direct), impostors + [w.root.der]) == "chain_too_long"
    assert len(calls) == 2 * 8 + 2
    calls.clear()
    assert reason(chain(w.direct), impostors + [w.root.der], policy=x509.Policy(max_chain=2)) == "chain_too_long"
    assert len(calls) == 2 * 2 + 2
    calls.clear()
    assert reason(chain(w.direct), [w.root.der] + impostors) is None
    assert len(calls) == 2  # the root's own signature, then the leaf's


def test_backtracking_is_bounded(w, monkeypatch):
    # Seven sent self-issued CAs "loop", all with one key: each is a valid
    # issuer of the leaf and of every other one, and none leads to an anchor.
    # The search could try 7! orders; it stops at the signature budget.
    k = pki.key(1024)
    base = CA("loop", key=k)
    ring = [base.child_ca("loop", key=k) for _ in range(7)]
    leaf = base.issue("127.0.0.1", bits=1024)
    calls = count_rsa(monkeypatch)
    assert reason(chain(leaf, *ring), [w.other_root.der]) == "chain_too_long"
    assert len(calls) == 2 * 8 + 2


# --- path building: backtracking, self-issued CAs, the deepest reason -------------


def test_backtracks_over_same_named_intermediates(w):
    # An old intermediate (same subject, signed by a root not in the store)
    # sent before the good one: the first leads nowhere, the second works.
    old = w.other_root.child_ca("espssl intermediate", key=w.inter.key)
    assert reason(chain(w.leaf, old, w.inter), [w.root.der]) is None
    assert reason(chain(w.leaf, w.inter, old), [w.root.der]) is None
    # Cross-signing two levels up: leaf <- inter <- {x (dead end), y (good)}.
    top = CA("espssl top")
    mid_key = pki.key(2048)
    x = w.other_root.child_ca("espssl mid", key=mid_key)
    y = top.child_ca("espssl mid", key=mid_key)
    inter = CA("espssl inter2", parent=x)  # signed by mid_key: x and y both verify it
    leaf = inter.issue("127.0.0.1")
    assert reason(chain(leaf, inter, x, y), [top.der]) is None
    assert reason(chain(leaf, inter, y, x), [top.der]) is None
    assert reason(chain(leaf, inter, x), [top.der]) == "unknown_issuer"


def test_self_issued_intermediates_not_counted_for_path_len():
    # root (pathLen 1) -> a -> a' (self-issued: subject == issuer == "sia", new key) -> leaf
    for path_len, want in ((1, None), (0, "path_len")):
        root = CA("si root %d" % path_len, path_len=path_len)
        a = root.child_ca("sia")
        a2 = CA("sia", parent=a)  # self-issued, another key
        assert a2.cert.issuer == a2.cert.subject and a2.key is not a.key
        leaf = a2.issue("127.0.0.1")
        assert reason(chain(leaf, a2, a), [root.der]) == want
        assert reason(chain(leaf, a, a2), [root.der]) == want
    # Not self-issued: counted.
    root = CA("nsi root", path_len=1)
    b = root.child_ca("nsi b")
    c = b.child_ca("nsi c")
    assert reason(chain(c.issue("127.0.0.1"), c, b), [root.der]) == "path_len"


@pytest.mark.parametrize("n", [3, 255, 2**31 - 1, 2**31, 2**32 - 1])
def test_path_len_integers_up_to_32_bits(n):
    root = CA("big pathlen root %d" % n, path_len=n)
    inter = root.child_ca("big pathlen inter %d" % n)
    assert reason(chain(inter.issue("127.0.0.1"), inter), [root.der]) is None


def test_path_len_too_long_or_negative_is_malformed(w):
    fields = pki.tbs_fields(w.inter.der)
    exts = pki.extensions(fields)
    bc = [e for e in exts if pki.ext_oid(e) == b"\x55\x1d\x13"][0]
    for bad in (b"\x02\x06\x01\x00\x00\x00\x00\x00", b"\x02\x01\xff", b"\x02\x02\x00\x01"):
        nbc = pki.ext(b"\x55\x1d\x13", pki.tlv(0x30, b"\x01\x01\xff" + bad), 0xFF)
        der = pki.resign(pki.with_extensions(fields, [nbc if e == bc else e for e in exts]), w.root.key)
        assert reason(chain(w.leaf, der), [w.root.der]) == "malformed", bad


def test_reason_of_the_deepest_path(w):
    # A forged intermediate first (bad_signature at depth 1), then the real one
    # whose anchor refuses it (path_len at depth 2): path_len is reported.
    root0 = CA("deep pathlen 0", path_len=0)
    i1 = root0.child_ca("deep i1")
    fake = root0.child_ca("deep i1", fresh_key=True)
    leaf = i1.issue("127.0.0.1")
    assert reason(chain(leaf, fake, i1), [root0.der]) == "path_len"
    assert reason(chain(leaf, i1, fake), [root0.der]) == "path_len"
    # A dead end one level deeper beats a refused issuer higher up.
    lone = CA("deep lone")
    li = lone.child_ca("deep li")
    fake2 = lone.child_ca("deep li", fresh_key=True)
    leaf2 = li.issue("127.0.0.1")
    assert reason(chain(leaf2, fake2, li), [w.root.der]) == "unknown_issuer"
    # At equal depth the first failure met sticks.
    f1 = w.root.child_ca("espssl intermediate", fresh_key=True)
    f2 = w.root.child_ca("espssl intermediate", is_ca=False)
    assert reason(chain(w.leaf, f1, f2), []) == "bad_signature"


# --- EKU, anchors --------------------------------------------------------------------

_EKU = cx509.oid.ExtendedKeyUsageOID


@pytest.mark.parametrize("crit", [False, True])
def test_ext_key_usage(w, crit):
    def leaf(*oids):
        return w.root.issue("127.0.0.1", extensions=((cx509.ExtendedKeyUsage(list(oids)), crit),))

    client = x509.Policy(purpose=2)
    assert reason(chain(leaf(_EKU.SERVER_AUTH)), [w.root.der]) is None
    assert reason(chain(leaf(_EKU.CLIENT_AUTH, _EKU.SERVER_AUTH)), [w.root.der]) is None
    assert reason(chain(leaf(_EKU.ANY_EXTENDED_KEY_USAGE)), [w.root.der]) is None
    assert reason(chain(leaf(_EKU.CLIENT_AUTH)), [w.root.der]) == "ext_key_usage"
    assert reason(chain(leaf(_EKU.CODE_SIGNING, _EKU.EMAIL_PROTECTION)), [w.root.der]) == "ext_key_usage"
    # id-kp-0 does not exist: it must not read as anyExtendedKeyUsage.
    assert reason(chain(leaf(ObjectIdentifier("1.3.6.1.5.5.7.3.0"))), [w.root.der]) == "ext_key_usage"
    assert reason(chain(leaf(_EKU.CLIENT_AUTH)), [w.root.der], policy=client) is None
    assert reason(chain(leaf(_EKU.SERVER_AUTH)), [w.root.der], policy=client) == "ext_key_usage"
    assert reason(chain(w.leaf, w.inter), [w.root.der], policy=client) is None  # no EKU: any purpose
    # An EKU that is an empty SEQUENCE is not DER of ExtKeyUsageSyntax (SIZE (1..MAX)).
    empty = cx509.UnrecognizedExtension(cx509.oid.ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x00")
    assert reason(chain(w.root.issue("127.0.0.1", extensions=((empty, crit),))), [w.root.der]) == "malformed"
    with pytest.raises(ValueError):
        x509.Policy(purpose=3)


def test_eku_of_intermediates_not_checked(w):
    eku = cx509.ExtendedKeyUsage([_EKU.CLIENT_AUTH])
    inter = w.root.child_ca("eku inter", extensions=((eku, False),))
    assert reason(chain(inter.issue("127.0.0.1"), inter), [w.root.der]) is None


def _strip_bc(ca, signer_key):
    # ca's certificate without its basicConstraints extension, re-signed.
    fields = pki.tbs_fields(ca.der)
    exts = [e for e in pki.extensions(fields) if pki.ext_oid(e) != b"\x55\x1d\x13"]
    return pki.resign(pki.with_extensions(fields, exts), signer_key)


def test_v3_anchor_needs_basic_constraints(w, tmp_path):
    root = CA("v3 no bc")
    leaf = root.issue("127.0.0.1")
    bare = _strip_bc(root, root.key)
    assert reason(chain(leaf), [root.der]) is None
    assert reason(chain(leaf), [bare]) == "not_a_ca"
    # The SDK's v1 CA stays an issuer by default, never a v3 one.
    sdk = pki.makefile_sh(tmp_path)
    now = pki.not_before(sdk["server"]) + DAY
    assert reason([sdk["server"]], [sdk["ca"]], now=now) is None
    assert reason([sdk["server"]], [sdk["ca"]], now=now, policy=x509.Policy(anchor_without_ca=False)) == "not_a_ca"


# --- DER strictness: one edited field, re-signed -------------------------------------------


def _resigned_leaf(w, edit):
    # w.direct (issued by the root) with its tbsCertificate fields edited, signed again by the root.
    return pki.resign(edit(pki.tbs_fields(w.direct.der)), w.root.key)


def test_resign_helper_round_trip(w):
    assert reason([_resigned_leaf(w, lambda f: f)], [w.root.der]) is None


@pytest.mark.parametrize(
    "serial, ok",
    [(b"\x01", True), (b"\x00", True), (b"\x7f" + b"\x11" * 19, True), (b"\x00\x80" + b"\x11" * 18, True),
     (b"", False), (b"\x80", False), (b"\xff\x01", False), (b"\x00\x01", False), (b"\x01" * 21, False),
     (b"\x00\x80" + b"\x11" * 19, False)],
)  # fmt: skip
def test_serial_number(w, serial, ok):
    der = _resigned_leaf(w, lambda f: [f[0], pki.tlv(0x02, serial)] + f[2:])
    assert reason([der], [w.root.der]) == (None if ok else "malformed")


def test_explicit_v1_version_refused(w):
    # A v3 certificate's fields minus the extensions, with version [0] INTEGER 0 written out.
    f = pki.tbs_fields(w.direct.der)
    v1 = [pki.tlv(0xA0, b"\x02\x01\x00")] + f[1:-1]
    assert reason([pki.resign(f[1:-1], w.root.key)], [w.root.der]) is None  # v1, version absent
    assert reason([pki.resign(v1, w.root.key)], [w.root.der]) == "malformed"


def test_unique_ids_order(w):
    f = pki.tbs_fields(w.direct.der)
    iuid, suid = pki.tlv(0x81, b"\x00\x01"), pki.tlv(0x82, b"\x00\x02")
    ok = [f[:-1] + [iuid, suid, f[-1]], f[:-1] + [iuid, f[-1]], f[:-1] + [suid, f[-1]]]
    bad = [f[:-1] + [suid, iuid, f[-1]], f[:-1] + [iuid, iuid, f[-1]], f[:-1] + [f[-1], iuid],
           f[:-1] + [pki.tlv(0x80, b"\x00"), f[-1]]]  # fmt: skip
    for fields in ok:
        assert reason([pki.resign(fields, w.root.key)], [w.root.der]) is None
    for fields in bad:
        assert reason([pki.resign(fields, w.root.key)], [w.root.der]) == "malformed"


def test_rsa_key_encoding(w):
    # The anchor's key: parameters NULL, INTEGERs minimal.  Re-signed by the
    # root's key, so only the encoding differs from the good root.
    fields = pki.tbs_fields(w.root.der)
    spki = fields[6]
    alg, bits = pki.parts(pki.value(spki))
    rsakey = pki.value(bits)[1:]
    n, e = pki.parts(pki.value(rsakey))

    def with_spki(alg=alg, n=n, e=e):
        key = pki.tlv(0x03, b"\x00" + pki.tlv(0x30, n + e))
        return pki.resign(fields[:6] + [pki.tlv(0x30, alg + key)] + fields[7:], w.root.key)

    leaf = w.direct.der
    assert reason([leaf], [with_spki()]) is None
    oid = pki.parts(pki.value(alg))[0]
    for bad_alg in (oid, oid + b"\x04\x00", oid + b"\x05\x01\x00", oid + b"\x05\x00\x05\x00"):
        assert reason([leaf], [with_spki(alg=pki.tlv(0x30, bad_alg))]) == "malformed", bad_alg
    assert reason([leaf], [with_spki(n=pki.tlv(0x02, b"\x00" + pki.value(n)))]) == "malformed"
    assert reason([leaf], [with_spki(e=pki.tlv(0x02, b"\x00\x01\x00\x01"))]) == "malformed"
    assert reason([leaf], [with_spki(e=pki.tlv(0x02, b"\xff\x01"))]) == "malformed"


def test_extension_encoding(w):
    fields = pki.tbs_fields(w.direct.der)
    exts = pki.extensions(fields)
    private = pki.ext(b"\x2b\x06\x01\x04\x01\x83\xb2\x23\x01\x01", b"\x05\x00")

    def leaf(new):
        return [pki.resign(pki.with_extensions(fields, new), w.root.key)]

    assert reason(leaf(exts + [private]), [w.root.der]) is None
    assert reason(leaf(exts + [private, private]), [w.root.der]) == "malformed"  # repeated unknown OID
    assert reason(leaf(exts + [exts[0]]), [w.root.der]) == "malformed"  # repeated basicConstraints
    # critical FALSE written out: the DEFAULT, never in DER.
    bc_false = pki.ext(b"\x55\x1d\x13", b"\x30\x00", 0x00)
    assert reason(leaf([bc_false] + exts[1:]), [w.root.der]) == "malformed"
    assert reason(leaf([pki.ext(b"\x55\x1d\x13", b"\x30\x00")] + exts[1:]), [w.root.der]) is None
    # Key identifiers are never critical.
    for oid in (b"\x55\x1d\x0e", b"\x55\x1d\x23"):
        inner = pki.tlv(0x04, b"\x01" * 20) if oid[2] == 0x0E else pki.tlv(0x30, pki.tlv(0x80, b"\x01" * 20))
        rest = [e for e in exts if pki.ext_oid(e) != oid]
        assert reason(leaf(rest + [pki.ext(oid, inner)]), [w.root.der]) is None
        assert reason(leaf(rest + [pki.ext(oid, inner, 0xFF)]), [w.root.der]) == "malformed"


# --- inputs: the name's type, malformed anchors in a list --------------------------------


def test_name_must_be_text(w):
    for bad in (b"127.0.0.1", bytearray(b"localhost"), 127):
        assert reason(chain(w.leaf, w.inter), [w.root.der], name=bad) == "bad_name"


def test_malformed_anchor_in_a_list_is_skipped(w):
    anchors = [b"", b"\x30\x03\x02\x01\x00", w.root.der[:-5], w.root.der]
    assert reason(chain(w.leaf, w.inter), anchors) is None
    assert reason(chain(w.leaf, w.inter), anchors[:3]) == "unknown_issuer"


# --- anchor integrity: a self-issued anchor's own signature -------------------------------


def _flip_path_len(root_der):
    # pathLenConstraint 0 -> 16: one byte of the signed part changed.
    i = root_der.index(b"\x01\x01\xff\x02\x01\x00")
    return root_der[: i + 5] + b"\x10" + root_der[i + 6 :]


def test_damaged_anchor_not_trusted(w):
    root0 = CA("integrity root", path_len=0)
    i1 = root0.child_ca("integrity i1")
    leaf = i1.issue("127.0.0.1")
    assert reason(chain(leaf, i1), [root0.der]) == "path_len"
    damaged = _flip_path_len(root0.der)
    assert reason(chain(leaf, i1), [damaged]) == "bad_anchor"
    # A damaged root that is not the one used is never looked at.
    assert reason(chain(w.leaf, w.inter), [damaged, w.root.der]) is None
    # The pinned self-signed leaf too: a changed validity (signed) shows.
    ss = CA("selfsigned integrity", is_ca=False)
    bad = _set_time(ss.der, b"\x17\x0d360101000000Z", b"\x17\x0d350101000000Z")
    assert reason([ss.der], [ss.der]) is None
    assert reason([bad], [bad]) == "bad_anchor"
    # Not self-issued: trusted as stored (documented).
    assert reason(chain(w.leaf), [w.inter.der]) is None


def test_anchor_self_signature_hash(w):
    # SHA-1 self-signature: checked even with allow_sha1 off (it only detects damage).
    r1 = CA("sha1 root", hash_name="sha1")
    leaf = r1.issue("127.0.0.1")
    assert reason(chain(leaf), [r1.der], policy=x509.Policy(allow_sha1=False)) is None
    # SHA-384 self-signature: the device cannot check it -> refused.
    r384 = CA("sha384 root", hash_name="sha384")
    assert reason(chain(r384.issue("127.0.0.1")), [r384.der]) == "unsupported_algorithm"


def test_anchor_check_cached_by_sha256(w, monkeypatch):
    class Anchors(list):
        verified = []

    anchors = Anchors([w.root.der])
    calls = count_rsa(monkeypatch)
    assert reason(chain(w.direct), anchors) is None
    assert len(calls) == 2 and anchors.verified == [hashlib.sha256(w.root.der).digest()]
    # Anchors as a plain list: no cache.
    assert reason(chain(w.direct), [w.root.der]) is None
    assert len(calls) == 4
    # Given a cache with an anchor in it, only the chain's signatures run.
    assert reason(chain(w.direct), anchors) is None
    assert len(calls) == 5
    # Bounded: the oldest goes.
    anchors.verified[:] = [bytes([i]) * 32 for i in range(8)]
    assert reason(chain(w.direct), anchors) is None
    assert len(anchors.verified) == 8 and anchors.verified[-1] == hashlib.sha256(w.root.der).digest()


# --- the SDK recipe and openssl-made chains --------------------------------------------


def test_makefile_sh_recipe(tmp_path):
    sdk = pki.makefile_sh(tmp_path)
    server, ca = sdk["server"], sdk["ca"]
    assert server[4:7] != b"\xa0\x03\x02"  # v1: no [0] version field
    # openssl dated both from the clock, maybe a second apart: the common window.
    nb = max(pki.not_before(server), pki.not_before(ca))
    na = min(pki.not_after(server), pki.not_after(ca))
    fb = x509.Policy(cn_fallback=True)
    assert reason([server], [ca], now=nb) is None
    assert reason([server], [ca], now=na) is None
    assert reason([server], [ca], now=nb - 1) == "not_yet_valid"
    assert reason([server], [ca], now=na + 1) == "expired"
    assert reason([server], [ca], now=nb, name="127.0.0.1", policy=fb) is None
    assert reason([server], [ca], now=nb, name="127.0.0.1") == "name_mismatch"
    assert reason([server], [ca], now=nb, policy=x509.Policy(allow_sha1=False)) == "weak_hash"
    assert reason([server], [ca], now=nb, policy=x509.Policy(min_rsa_bits=2048)) == "weak_key"
    other = pki.makefile_sh(tmp_path / "other")
    later = pki.not_before(other["ca"]) + DAY  # openssl dated it from the clock, a little later
    assert reason([server], [other["ca"]], now=later) == "bad_signature"  # same CA name, other key


def test_openssl_v3_chain(tmp_path):
    o = pki.openssl_v3_chain(tmp_path)
    nb = pki.not_before(o["server"])
    assert reason([o["server"]], [o["ca"]], now=nb, name="127.0.0.1") is None
    assert reason([o["server"]], [o["ca"]], now=nb, name="localhost") is None
    assert reason([o["server"]], [o["ca"]], now=nb, name="127.0.0.9") == "name_mismatch"
    s384 = pki.openssl_v3_chain(tmp_path / "384", digest="sha384")
    later = pki.not_before(s384["server"]) + DAY
    assert reason([s384["server"]], [s384["ca"]], now=later) == "unsupported_algorithm"


# --- fuzzing: mutated certificates ------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_chain():
    root = CA("fuzz root", bits=1024)
    inter = root.child_ca("fuzz inter", bits=1024, path_len=0)
    leaf = inter.issue("127.0.0.1", "fuzz.example.test", bits=1024, hash_name="sha1")
    return [leaf.der, inter.der], root.der


def _mutate(data, der):
    kind = data.draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "length"]))
    pos = data.draw(st.integers(0, len(der) - 1))
    b = bytearray(der)
    if kind == "flip":
        b[pos] ^= data.draw(st.integers(1, 255))
    elif kind == "set":
        v = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0xFF]))
        if b[pos] == v:
            v ^= 0x01
        b[pos] = v
    elif kind == "truncate":
        del b[pos:]
    elif kind == "insert":
        b.insert(pos, data.draw(st.integers(0, 255)))
    elif kind == "delete":
        del b[pos]
    else:
        # Grow or shrink a length byte near the start of a TLV.
        b[pos] = (b[pos] + data.draw(st.sampled_from([1, -1, 2, -2, 0x40]))) & 0xFF
    return bytes(b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_chain_never_verifies(fuzz_chain, data):
    certs, root = fuzz_chain
    assert reason(certs, [root], name="127.0.0.1") is None
    i = data.draw(st.integers(0, 1))
    mutated = list(certs)
    mutated[i] = _mutate(data, certs[i])
    assume_changed = mutated[i] != certs[i]
    if not assume_changed:
        return
    got = reason(mutated, [root], name="127.0.0.1")  # raises anything but VerifyError -> test fails
    assert got is not None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_signature_is_bad_signature(fuzz_chain, data):
    # Any change to the signature value's bytes (same length) is caught by RSA.
    certs, root = fuzz_chain
    i = data.draw(st.integers(0, 1))
    der = bytearray(certs[i])
    k = 128  # RSA-1024 signature: the last 128 bytes of the certificate
    pos = len(der) - k + data.draw(st.integers(0, k - 1))
    der[pos] ^= data.draw(st.integers(1, 255))
    mutated = list(certs)
    mutated[i] = bytes(der)
    assert reason(mutated, [root], name="127.0.0.1") == "bad_signature"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_anchor_raises_only_verify_error(fuzz_chain, data):
    certs, root = fuzz_chain
    # A changed byte anywhere in a self-signed anchor shows (structure, name
    # or its own signature), and nothing but VerifyError is ever raised.
    # Only a change inside its issuer Name goes unseen: the anchor is then no
    # longer self-issued and is trusted as stored, like an intermediate
    # (documented); its subject, key and extensions are intact then.
    mutated = _mutate(data, root)
    if mutated != root and reason(certs, [mutated], name="127.0.0.1") is None:
        i0, i1 = espconn_der.cert_names(root)[:2]
        assert len(mutated) == len(root)
        assert [k for k in range(len(root)) if mutated[k] != root[k]][0] in range(i0, i1)
    reason([_mutate(data, root)], [_mutate(data, root)])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(blob):
    assert reason([blob], [blob]) is not None


# --- the same cases on MicroPython ----------------------------------------------------------

MP_SCRIPT = r"""
import sys, gc, os


def load(certs, anchors):
    # All certificates in one buffer, as the TLS tap holds the peer's
    # Certificate message; each passed on as a memoryview of its bytes.
    names = [n for n in (certs + "," + anchors).split(",") if n]
    sizes = [os.stat(n)[6] for n in names]
    buf = bytearray(sum(sizes))
    mv = memoryview(buf)
    out = []
    off = 0
    for n, size in zip(names, sizes):
        with open(n, "rb") as f:
            f.readinto(mv[off : off + size])
        out.append(mv[off : off + size])
        off += size
    k = len([n for n in certs.split(",") if n])
    return out[:k], out[k:]


def policy(text):
    kw = {}
    for item in text.split(","):
        if item:
            k, v = item.split("=")
            try:
                kw[k] = int(v)
            except ValueError:
                kw[k] = v
    if "clock" in kw:
        t = kw["clock"]
        kw["clock"] = lambda: t
    return x509.Policy(**kw) if kw else None


# One case per process (argv: cases file, line number), each from a fresh
# heap.  The certificates are loaded first, before the verifier is imported:
# on a board they sit in the connection's buffer, made once, and the heap
# above it stays in one piece for the RSA steps (0.5 KiB blocks at RSA-2048).
with open(sys.argv[1]) as f:
    for i in range(int(sys.argv[2]) + 1):
        line = f.readline()
label, certs, anchors, now, name, pol = line.rstrip().split("|")
line = None
certs, anchors = load(certs, anchors)
from espconn import x509
from espconn.errors import VerifyError

pol = policy(pol)
now = int(now) if now else None
name = name or None
if name and name.startswith("b:"):
    name = name[2:].encode()  # a bytes name: refused as bad_name
gc.collect()
free = gc.mem_free()
try:
    x509.verify_chain(certs, anchors, now, name, pol)
    got = "ok"
except VerifyError as exc:
    got = exc.reason
print(label, got, free)
"""


def _mp_cases(w, dated, tmp_path):
    files = {}

    def f(der):
        key = hashlib.sha256(der).hexdigest()[:16]
        if key not in files:
            files[key] = der
            (tmp_path / (key + ".der")).write_bytes(der)
        return key + ".der"

    sdk = pki.makefile_sh(tmp_path / "sdk")
    sdk_now = pki.not_before(sdk["server"]) + DAY
    fb = "cn_fallback=1"
    b = w.bits
    ku = cx509.KeyUsage(False, False, False, False, False, False, True, False, False)
    no_sign = w.root.child_ca("mp ku", key_usage=ku, bits=b)
    not_ca = w.root.child_ca("mp not ca", is_ca=False, bits=b)
    root0 = CA("mp pathlen 0", path_len=0, bits=b)
    i1 = root0.child_ca("mp pathlen i1", bits=b)
    ext = cx509.UnrecognizedExtension(_PRIVATE_OID, b"\x05\x00")
    # Issue 11: EKU, anchors, backtracking, self-issued CAs, deepest reason,
    # DER strictness, anchor integrity, input types.
    eku_client = w.root.issue("127.0.0.1", bits=b, extensions=((cx509.ExtendedKeyUsage([_EKU.CLIENT_AUTH]), False),))
    eku_server = w.root.issue("127.0.0.1", bits=b, extensions=((cx509.ExtendedKeyUsage([_EKU.SERVER_AUTH]), True),))
    nobc_root = CA("mp v3 no bc", bits=b)
    nobc_leaf = nobc_root.issue("127.0.0.1", bits=b)
    old_inter = w.other_root.child_ca("espssl intermediate", key=w.inter.key)
    si_root = CA("mp si root", path_len=1, bits=b)
    si_a = si_root.child_ca("mp sia", bits=b)
    si_a2 = CA("mp sia", parent=si_a, bits=b)
    si_leaf = si_a2.issue("127.0.0.1", bits=b)
    fake_i1 = root0.child_ca("mp pathlen i1", fresh_key=True, bits=b)
    big_root = CA("mp big pathlen", path_len=2**31, bits=b)
    big_inter = big_root.child_ca("mp big inter", bits=b)
    int_root = CA("mp integrity", path_len=0, bits=b)
    int_i1 = int_root.child_ca("mp integrity i1", bits=b)
    int_leaf = int_i1.issue("127.0.0.1", bits=b)
    fields = pki.tbs_fields(w.direct.der)
    exts = pki.extensions(fields)
    aki = [e for e in exts if pki.ext_oid(e) == b"\x55\x1d\x23"]
    aki_inner = pki.value(pki.parts(pki.value(aki[0]))[1])
    crit_aki = [e for e in exts if e not in aki] + [pki.ext(b"\x55\x1d\x23", aki_inner, 0xFF)]
    bad_serial = pki.resign([fields[0], pki.tlv(0x02, b"\xff\x01")] + fields[2:], w.root.key)
    dup_ext = pki.resign(pki.with_extensions(fields, exts + [exts[-1]]), w.root.key)
    crit_aki_der = pki.resign(pki.with_extensions(fields, crit_aki), w.root.key)
    cases = [
        # label, certs, anchors, now, name, policy, expected
        ("chain", [w.leaf, w.inter], [w.root], NOW, "127.0.0.1", "", None),
        ("chain_dns", [w.leaf, w.inter], [w.other_root, w.root], NOW, "esp.example.test", "", None),
        ("wildcard", [w.leaf, w.inter], [w.root], NOW, "x.dev.example.test", "", None),
        ("name", [w.leaf, w.inter], [w.root], NOW, "127.0.0.2", "", "name_mismatch"),
        ("nb-1", [dated.leaf, w.inter], [w.root], dated.nb - 1, "", "", "not_yet_valid"),
        ("nb", [dated.leaf, w.inter], [w.root], dated.nb, "", "", None),
        ("na", [dated.leaf, w.inter], [w.root], dated.na, "", "", None),
        ("na+1", [dated.leaf, w.inter], [w.root], dated.na + 1, "", "", "expired"),
        ("root_na+1", [dated.root_leaf], [dated.root], dated.na + 1, "", "", "expired"),
        ("unknown", [w.leaf, w.inter], [w.other_root], NOW, "", "", "unknown_issuer"),
        ("forged", [w.fake_root.issue("127.0.0.1", bits=b)], [w.root], NOW, "", "", "bad_signature"),
        ("not_ca", [not_ca.issue("127.0.0.1", bits=b), not_ca], [w.root], NOW, "", "", "not_a_ca"),
        ("path_len", [i1.issue("127.0.0.1", bits=b), i1], [root0], NOW, "", "", "path_len"),
        ("key_usage", [no_sign.issue("127.0.0.1", bits=b), no_sign], [w.root], NOW, "", "", "key_usage"),
        ("sha384", [w.root.issue("127.0.0.1", hash_name="sha384", bits=b)], [w.root], NOW, "", "", "unsupported_algorithm"),
        ("crit", [w.root.issue("127.0.0.1", extensions=((ext, True),), bits=b)], [w.root], NOW, "", "",
         "unknown_critical_extension"),
        ("malformed", [w.leaf.der[:-3]], [w.root], NOW, "", "", "malformed"),
        ("too_long", [w.leaf, w.inter], [w.root], NOW, "", "max_chain=2", "chain_too_long"),
        ("weak", [w.leaf, w.inter], [w.root], NOW, "", "min_rsa_bits=%d" % (b + 8), "weak_key"),
        ("unset_old", [w.leaf, w.inter], [w.root], "", "", "clock=1000,release=%d" % (pki.VALID_TO.timestamp() + 1),
         "expired"),
        ("unset_ok", [w.leaf, w.inter], [w.root], "", "", "clock=1000", None),
        ("valid_clock", [dated.leaf, w.inter], [w.root], "", "", "clock=%d" % (dated.na + 1), "expired"),
        ("sdk", [sdk["server"]], [sdk["ca"]], sdk_now, "127.0.0.1", fb, None),
        ("sdk_nofb", [sdk["server"]], [sdk["ca"]], sdk_now, "127.0.0.1", "", "name_mismatch"),
        ("sdk_nosha1", [sdk["server"]], [sdk["ca"]], sdk_now, "", "allow_sha1=0", "weak_hash"),
        ("sdk_strict", [sdk["server"]], [sdk["ca"]], sdk_now, "", "anchor_without_ca=0", "not_a_ca"),
        ("eku_client", [eku_client], [w.root], NOW, "", "", "ext_key_usage"),
        ("eku_server", [eku_server], [w.root], NOW, "", "", None),
        ("eku_purpose", [eku_client], [w.root], NOW, "", "purpose=2", None),
        ("v3_no_bc", [nobc_leaf], [_strip_bc(nobc_root, nobc_root.key)], NOW, "", "", "not_a_ca"),
        ("backtrack", [w.leaf, old_inter, w.inter], [w.root], NOW, "127.0.0.1", "", None),
        ("self_issued", [si_leaf, si_a2, si_a], [si_root], NOW, "", "", None),
        ("deepest", [i1.issue("127.0.0.1", bits=b), fake_i1, i1], [root0], NOW, "", "", "path_len"),
        ("big_pathlen", [big_inter.issue("127.0.0.1", bits=b), big_inter], [big_root], NOW, "", "", None),
        ("anchor_ok", [int_leaf, int_i1], [int_root], NOW, "", "", "path_len"),
        ("bad_anchor", [int_leaf, int_i1], [_flip_path_len(int_root.der)], NOW, "", "", "bad_anchor"),
        ("bad_serial", [bad_serial], [w.root], NOW, "", "", "malformed"),
        ("dup_ext", [dup_ext], [w.root], NOW, "", "", "malformed"),
        ("crit_aki", [crit_aki_der], [w.root], NOW, "", "", "malformed"),
        ("skip_bad_anchor", [w.leaf, w.inter], [w.root.der[:-9], w.root], NOW, "", "", None),
        ("bad_name", [w.leaf, w.inter], [w.root], NOW, "b:127.0.0.1", "", "bad_name"),
        ("clock_unset", [w.leaf, w.inter], [w.root], "", "", "clock=1000,unset_clock=refuse", "clock_unset"),
    ]
    lines = []
    for label, certs, anchors, now, name, pol, want in cases:
        cl = ",".join(f(c if isinstance(c, bytes) else c.der) for c in certs)
        al = ",".join(f(a if isinstance(a, bytes) else a.der) for a in anchors)
        lines.append("%s|%s|%s|%s|%s|%s" % (label, cl, al, now, name, pol))
        # CPython first: the expectation holds here.
        kw = {}
        for item in filter(None, pol.split(",")):
            k, v = item.split("=")
            kw[k] = int(v) if v.isdigit() else v
        if "clock" in kw:
            c = kw.pop("clock")
            kw["clock"] = lambda c=c: c
        policy = x509.Policy(**kw) if kw else None
        got = reason([c if isinstance(c, bytes) else c.der for c in certs],
                     [a if isinstance(a, bytes) else a.der for a in anchors],
                     now=int(now) if now != "" else None, policy=policy,
                     name=name[2:].encode() if name.startswith("b:") else name or None)  # fmt: skip
        assert got == want, label
    (tmp_path / "cases.txt").write_text("\n".join(lines) + "\n")
    return [(c[0], c[6] or "ok") for c in cases]


def _run_mp(micropython, firmware_mpy, tmp_path, expected, heap):
    # The package's __init__ (the SDK layer, loading x509 lazily) is empty, so the
    # verifier alone is measured; the driver is compiled too, so the heap holds
    # only what a board's would.
    mpy = (firmware_mpy.driver(tmp_path / "drv", "x509_cases", MP_SCRIPT), firmware_mpy(empty_init=True))
    got = []
    for i in range(len(expected)):
        out = micropython.run("import x509_cases\n", args=(tmp_path / "cases.txt", i), path=mpy, heapsize=heap)
        got.append(out.stdout.split())
    assert [(g[0], g[1]) for g in got] == expected
    free = [int(g[2]) for g in got]
    print("micropython -X heapsize=%s: heap free before verify_chain %d..%d bytes" % (heap, min(free), max(free)))


@pytest.fixture(scope="module")
def w1024():
    return _world(1024)


def _reasons_in_source():
    # Every reason string the verifier's modules can raise.
    import re

    root = pathlib.Path(x509.__file__).parent
    text = "".join((root / m).read_text() for m in ("x509.py", "rsa.py", "der.py"))
    return set(re.findall(r'(?:_fail|VerifyError)\(\s*"([a-z_]+)"', text)) | {"malformed"}


def test_readme_lists_every_reason():
    import re

    readme = (pathlib.Path(x509.__file__).parents[2] / "README.md").read_text()
    para = readme[readme.index("The chain's\nown reasons") :]
    para = para[: para.index("\n\n")]
    assert set(re.findall(r"`([a-z_]+)`", para)) == _reasons_in_source()


def test_micropython_same_outcomes(w1024, micropython, firmware_mpy, tmp_path):
    # RSA-1024 (the SDK's size) under the ESP8266's 38 KiB heap.
    cases = _mp_cases(w1024, _dated(w1024), tmp_path)
    # Every reason code has a case here (so on both interpreters).
    assert {r for _label, r in cases} - {"ok"} == _reasons_in_source()
    _run_mp(micropython, firmware_mpy, tmp_path, cases, "38K")


def test_micropython_rsa2048(w, dated, micropython, firmware_mpy, tmp_path):
    # RSA-2048 on the 64-bit unix port, whose code objects take about twice
    # the ESP8266's RAM: run with a larger heap (the figure is in the report).
    _run_mp(micropython, firmware_mpy, tmp_path, _mp_cases(w, dated, tmp_path), "48K")


# --- anchors from the flash CA store (espconn.castore) ------------------------------------


def _flash(image, size=4096):
    """esp.flash_read over a sector holding ``image``, the rest erased (0xFF)."""
    flash = bytearray(b"\xff" * size)
    flash[: len(image)] = image

    def read(off, buf):
        buf[:] = flash[off : off + len(buf)]

    return read


def test_anchors_from_ca_store(w):
    castore = pytest.importorskip("espconn.castore")  # the VERIFIER-STORE helper's module
    from espconn import binfmt
    from espconn.errors import StoreError

    pem = w.other_root.pem + w.root.pem  # one PEM entry, two certificates
    for entries in ([("other", w.other_root.der), ("root", w.root.der)], [("both", pem)]):
        store = castore.CAStore(_flash(binfmt.image(entries)), 0)
        assert reason(chain(w.leaf, w.inter), store, name="127.0.0.1") is None
        assert reason(chain(w.fake_root.issue("127.0.0.1")), store) == "bad_signature"
    only_other = castore.CAStore(_flash(binfmt.image([("other", w.other_root.der)])), 0)
    assert reason(chain(w.leaf, w.inter), only_other) == "unknown_issuer"
    # An erased store is an error, never "no CAs, so accept" (nor "unknown issuer").
    with pytest.raises(StoreError):
        x509.verify_chain(chain(w.leaf, w.inter), castore.CAStore(_flash(b""), 0), now=NOW)
