"""X.509 chain verification for the device: DER certificates in, one reason out.

    verify_chain(certs, anchors, now=None, name=None, policy=None) -> None
        or raise VerifyError(reason, message)

``certs`` is the peer's chain as sent (leaf first, then intermediates in any
order), each DER bytes/bytearray/memoryview; ``anchors`` an iterable of trusted
DER certificates or an object with ``.issuers(name_buf, off, end)`` (the flash
CA store, espconn.castore.CAStore; its ``.verified`` list, if any, caches the
SHA-256 of anchors whose own signature was checked); ``now`` unix seconds or
None (see "Time"); ``name`` a DNS name or IP address ``str``, or None for no
name check (anything else -> bad_name).  A CA store that is erased, empty or
damaged raises espconn.errors.StoreError (its ``.reason`` says which) out of
verify_chain: never "no CAs, so accept".

One module on purpose: every check needs the DER walker, RSA and the name
rules together, and on the board each module, function and global costs RAM
of its own (espconn.der, espconn.rsa and espconn.names re-export those parts
for the host tools and the tests).

Certificates are walked in place over a memoryview (the DER walker below): nothing
is copied, names are compared byte for byte, nothing recurses.  Path building
is a depth-first search over every candidate issuer, iterative (one index per
depth), bounded: each sent certificate at most once per path, at most
``policy.max_chain`` certificates in a path (anchor included), at most
2 * max_chain + 2 signature checks in all (then chain_too_long), RSA moduli up
to 4096 bits and exponents up to 32 bits.  When no path works, the reason is
that of the path that got closest to an anchor (the deepest; the first one met
at equal depth).  Messages are "<which certificate>: <reason>" (one text per
reason: every distinct string would cost RAM on the board).

Memory: besides the certificates (never copied), a check holds a few small
tuples and views, and the anchors named as the certificate's issuer (copies
out of a CA store, fetched together: usually one); an RSA-2048 signature
needs about 3 KiB more, in 0.5 KiB blocks (RSA-1024: half).  A heap too full or fragmented for that raises
MemoryError, which is passed on unchanged (the SDK layer reports ESPCONN_MEM).

Checked
  - DER structure of every certificate used: lengths inside their containers,
    no trailing bytes, v1..v3 (an explicit v1 version is refused), serial 1..20
    octets, non-negative, minimal; identical inner and outer signature
    algorithms; rsaEncryption keys with NULL parameters and minimal INTEGERs;
    BIT STRINGs without unused bits; unique IDs only in v2/v3, issuer's before
    subject's, once each; extensions only in v3, each OID once, critical
    encoded only as TRUE (an explicit FALSE is a DEFAULT, refused) -> malformed
  - path building: leaf -> sent intermediates (any order) -> an anchor whose
    subject Name equals the issuer Name byte for byte; every candidate issuer
    is tried, backtracking; a sent certificate byte-identical to an anchor is
    trusted as it is -> unknown_issuer, chain_too_long
  - signatures: RSA PKCS#1 v1.5 with SHA-1 or SHA-256 (see "RSA") ->
    bad_signature; any other algorithm (SHA-384/512, ECDSA, PSS, MD5) ->
    unsupported_algorithm; SHA-1 refused when ``allow_sha1`` is off -> weak_hash
  - the anchor's integrity: a self-issued anchor (subject == issuer) must carry
    a valid signature by its own key before it is trusted (once per anchor
    DER: cached by SHA-256 in the store's ``verified`` list) -> bad_anchor;
    self-signed with SHA-384/512 -> unsupported_algorithm.  SHA-1 is accepted
    here whatever ``allow_sha1`` says: it only detects damage
  - keys: every certificate in the path (leaf, intermediates, anchor) must hold
    an RSA key of at least ``min_rsa_bits`` -> weak_key / unsupported_algorithm
  - every issuer (intermediates and the anchor): basicConstraints cA -> not_a_ca;
    pathLenConstraint (0 .. 2^32-1; self-issued intermediates below it are not
    counted, RFC 5280 6.1.4 (l)) -> path_len; keyUsage, when present, must
    assert keyCertSign -> key_usage.  Only a v1 anchor (which cannot carry
    extensions: the SDK makefile.sh's CA) is accepted as an issuer without
    basicConstraints, and only while ``anchor_without_ca`` is on (default); a
    v3 anchor needs cA TRUE
  - the leaf's extendedKeyUsage, when present: id-kp-serverAuth (``purpose``
    1, default) or id-kp-clientAuth (``purpose`` 2), or anyExtendedKeyUsage ->
    ext_key_usage; an empty one -> malformed
  - validity of every certificate in the path, the anchor included, with inclusive
    bounds: UTCTime (YYMMDDHHMMSSZ, 1950..2049) and GeneralizedTime
    (YYYYMMDDHHMMSSZ, up to 9999) -> expired, not_yet_valid
  - critical extensions other than basicConstraints, keyUsage, subjectAltName,
    extKeyUsage -> unknown_critical_extension; a critical authority or subject
    key identifier (RFC 5280 4.2.1.1/2: never critical) -> malformed
  - the name (leaf only): subjectAltName dNSName (match_dns: RFC
    6125 wildcards) and iPAddress entries; the subject CN only for certificates
    without subjectAltName and only with ``cn_fallback`` -> name_mismatch

Not checked (non-goals)
  - revocation (CRL, OCSP), certificate policies, name constraints (a critical
    nameConstraints extension is rejected, a non-critical one ignored),
    extKeyUsage of CA certificates, authority/subject key identifier values
    (issuers are matched by Name only)
  - the signature of an anchor that is not self-issued (an intermediate put in
    the store is trusted as stored)
  - a non-self-signed leaf pinned in the store is not trusted by itself; use
    cert_sha256() / spki_sha256() for pinning
  - DN normalisation: issuer and subject must be byte-identical
  - explicit DEFAULTs inside basicConstraints (cA FALSE) are tolerated

Time
  With ``now`` given, every certificate must satisfy notBefore <= now <=
  notAfter.  With ``now=None`` the policy's clock (default: time.time(),
  converted to unix seconds) is read; a reading before ``policy.release`` (the
  firmware's release date, RELEASE_TIME) means the clock was never set (an
  ESP8266 boots at 2000-01-01).  Then ``policy.unset_clock`` decides:
    "release" (default): refuse certificates whose notAfter lies before the
              release date (expired); notBefore is not checked
    "skip":   no date checks at all
    "refuse": raise VerifyError("clock_unset")
  Once the clock reads a date at or after the release date, the full window is
  checked against it.
"""

try:
    from micropython import const

    _MP = True  # on MicroPython: collect garbage before the big-number burst (RSA)
except ImportError:  # CPython
    _MP = False

    def const(x):  # type: ignore[misc]
        return x


from .errors import VerifyError

# The firmware's release date, 2026-11-01T00:00:00Z in unix seconds: no
# certificate that expired before it can be valid now, and a clock reading
# earlier than it has not been set.
RELEASE_TIME = const(1793491200)
_EPOCH_2000 = const(946684800)  # 2000-01-01 in unix seconds: the ESP8266 epoch

_MAX_CHAIN = const(16)  # hard cap on policy.max_chain
_CACHE = const(8)  # anchors remembered in a store's ``verified`` list

# DER tags.
_SEQ = const(0x30)
_BOOL = const(0x01)
_INT = const(0x02)
_BITS = const(0x03)
_OCTETS = const(0x04)
_NULL = const(0x05)
_OID = const(0x06)
_SET = const(0x31)
_UTCTIME = const(0x17)
_GENTIME = const(0x18)
_CTX0 = const(0xA0)  # [0] EXPLICIT version
_CTX1 = const(0x81)  # [1] IMPLICIT issuerUniqueID
_CTX2 = const(0x82)  # [2] IMPLICIT subjectUniqueID
_CTX3 = const(0xA3)  # [3] EXPLICIT extensions
_GN_DNS = const(0x82)  # GeneralName dNSName [2] IA5String
_GN_IP = const(0x87)  # GeneralName iPAddress [7] OCTET STRING

# OID values (content bytes only).
# One constant table, so one global (each costs RAM on the board, and a
# module dict with many entries makes every gc.collect() slower):
#   rsaEncryption OID 1.2.840.113549.1.1.1 (9 bytes; sha1/sha256WithRSAEncryption
#   are its first 8 + 5 / 11), commonName 2.5.4.3 (3), id-kp 1.3.6.1.5.5.7.3
#   (7: + 1 serverAuth, 2 clientAuth), anyExtendedKeyUsage 2.5.29.37.0 (4), the
#   days of each month in a common year (12), then RFC 8017 9.2 note 1: the DER
#   of DigestInfo up to the OCTET STRING header for SHA-1 (15) and SHA-256 (19).
_K = (
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
    b"\x55\x04\x03"
    b"\x2b\x06\x01\x05\x05\x07\x03"
    b"\x55\x1d\x25\x00"
    b"\x1f\x1c\x1f\x1e\x1f\x1e\x1f\x1f\x1e\x1f\x1e\x1f"
    b"\x30\x21\x30\x09\x06\x05\x2b\x0e\x03\x02\x1a\x05\x00\x04\x14"
    b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"
)
_K_RSA = const(0)
_K_CN = const(9)
_K_KP = const(12)
_K_ANY_EKU = const(19)
_K_MDAYS = const(23)
_K_SHA1 = const(35)
_K_SHA256 = const(50)
_PKCS1_SHA1 = const(5)  # 1.2.840.113549.1.1.5 sha1WithRSAEncryption: rsaEncryption[:8] + 5
_PKCS1_SHA256 = const(11)  # sha256WithRSAEncryption
_ID_CE = const(0x1D)  # 2.5.29.x: 55 1D x
_CE_SKI = const(14)
_CE_KU = const(15)
_CE_SAN = const(17)
_CE_BC = const(19)
_CE_AKI = const(35)
_CE_EKU = const(37)

# Fields of the tuple _parse() returns.
_TBS_OFF = const(0)  # TLV span of tbsCertificate (what is signed)
_TBS_END = const(1)
_HASH = const(2)  # SHA1 / SHA256, 0: unsupported signature algorithm
_SIG_OFF = const(3)  # signature bytes (after the unused-bits byte)
_SIG_END = const(4)
_ISS_OFF = const(5)  # issuer Name TLV
_ISS_END = const(6)
_SUB_OFF = const(7)  # subject Name TLV
_SUB_END = const(8)
_NOT_BEFORE = const(9)  # unix seconds
_NOT_AFTER = const(10)
_N_OFF = const(11)  # RSA modulus INTEGER content
_N_END = const(12)
_E = const(13)  # RSA exponent, 0: not an RSA key, -1: exponent too long
_CA = const(14)  # basicConstraints: -1 absent (v3), -2 absent (v1), 0 cA false, 1 cA true
_PATHLEN = const(15)  # -1: no pathLenConstraint
_KU = const(16)  # keyUsage: -1 absent, 0 without keyCertSign, 1 with
_SAN_OFF = const(17)  # subjectAltName GeneralNames content, both 0 if absent
_SAN_END = const(18)
_SPKI_OFF = const(19)  # SubjectPublicKeyInfo TLV
_SPKI_END = const(20)
_EKU = const(21)  # extKeyUsage: -1 absent, else bit k per id-kp-k, bit 0 anyExtendedKeyUsage
_SELF = const(22)  # self-issued: issuer Name == subject Name



class Policy:
    """What verify_chain() accepts beyond the fixed rules (see the module docstring).

    min_rsa_bits       smallest RSA modulus (default 1024; 512 is the lowest allowed)
    allow_sha1         accept sha1WithRSAEncryption (default True: the SDK signs with SHA-1)
    cn_fallback        match the name against the subject CN when there is no
                       subjectAltName (default False; legacy makefile.sh certificates)
    max_chain          most certificates in the peer's chain and in the path (default 8)
    anchor_without_ca  trust a v1 anchor (no basicConstraints possible) as an issuer (default True)
    unset_clock        "release" (default), "skip" or "refuse": see "Time"
    release            unix seconds: the clock is valid from here on, and with an unset
                       clock no certificate may expire before it (default RELEASE_TIME)
    clock              function returning unix seconds (default: time.time())
    purpose            the leaf's extendedKeyUsage, if any, must allow: 1 serverAuth
                       (default: the device is the client), 2 clientAuth
    """

    def __init__(
        self,
        min_rsa_bits=1024,
        allow_sha1=True,
        cn_fallback=False,
        max_chain=8,
        anchor_without_ca=True,
        unset_clock="release",
        release=RELEASE_TIME,
        clock=None,
        purpose=1,
    ):
        if min_rsa_bits < 512 or not 1 <= max_chain <= _MAX_CHAIN or unset_clock not in ("release", "skip", "refuse") or purpose not in (1, 2):
            raise ValueError("bad policy")
        self.min_rsa_bits = min_rsa_bits
        self.allow_sha1 = allow_sha1
        self.cn_fallback = cn_fallback
        self.max_chain = max_chain
        self.anchor_without_ca = anchor_without_ca
        self.unset_clock = unset_clock
        self.release = release
        self.clock = clock
        self.purpose = purpose


_default = None  # the default Policy, made on first use




def _fail(reason, what):
    # One message per reason: "<which certificate>: <reason>"; a text per
    # raise would cost RAM on the board for every string.
    return VerifyError(reason, what + ": " + reason)


def unix_time(t=None):
    """time.time() (or ``t``, a reading of it) in unix seconds on any port (the ESP8266 counts from 2000)."""
    import time

    if t is None:
        t = int(time.time())
    if time.gmtime(0)[0] == 2000:
        t += _EPOCH_2000
    return t




def _bad(msg):
    return VerifyError("malformed", msg)


# --- DER (espconn.der re-exports it) --------------------------------------------
#
# A small DER walker for certificates, over bytes, bytearray or memoryview.
#
# Plain functions on (buffer, offset, end) triples: nothing is copied, nothing
# recurses, and every length is checked against the container it sits in, so
# any byte sequence either yields spans inside ``[off, end)`` or raises
# ``VerifyError("malformed", ...)``.  Runs unchanged on MicroPython and CPython.
#
#     read(buf, off, end)   -> (tag, voff, vend)   one TLV at off
#     expect(buf, off, end, tag) -> (voff, vend)   read() and check the tag
#     natural(buf, voff, vend)                     INTEGER content minimal, >= 0?
#     uint(buf, voff, vend) -> int                 non-negative INTEGER value
#     equal(a, ao, ae, b, bo, be) -> bool          byte compare of two spans
#     cert_names(cert) -> (issuer_off, issuer_end, subject_off, subject_end)
#     check(buf, off, end, depth=8) -> int         whole TLV tree well formed?
#
# What is DER here (ITU-T X.690 section 10): single-byte tags only (the
# high-tag-number form, low 5 bits all ones, is rejected), definite lengths
# only, in their shortest form (a long form for a length under 128, or with a
# leading zero byte, is rejected), at most 3 length bytes (16 MiB: far beyond
# any certificate the device can hold).  INTEGERs read by ``uint`` must be
# minimal and non-negative.

_CONSTRUCTED = const(0x20)  # bit 6 of the identifier octet
_HIGH_TAG = const(0x1F)  # low 5 bits all ones: multi-byte tag follows
_MAX_DEPTH = const(32)  # hard cap for check()


def read(buf, off, end):
    """The TLV at ``off`` inside ``[off, end)`` -> ``(tag, voff, vend)``.

    ``voff``/``vend`` bound the value; ``vend <= end`` always holds.
    """
    if off < 0 or end > len(buf) or off + 2 > end:
        raise _bad("DER: truncated TLV")
    tag = buf[off]
    if tag & _HIGH_TAG == _HIGH_TAG:
        raise _bad("DER: multi-byte tag")
    n = buf[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise _bad("DER: indefinite length")
        if k > 3:
            raise _bad("DER: length too long")
        if off + k > end:
            raise _bad("DER: truncated length")
        if buf[off] == 0:
            raise _bad("DER: non-minimal length")
        n = buf[off]  # unrolled: no range object per TLV
        if k > 1:
            n = (n << 8) | buf[off + 1]
            if k > 2:
                n = (n << 8) | buf[off + 2]
        if n < 0x80:
            raise _bad("DER: non-minimal length")
        off += k
    if n > end - off:
        raise _bad("DER: length beyond its container")
    return tag, off, off + n


def expect(buf, off, end, tag):
    """``read()`` one TLV that must carry ``tag`` -> ``(voff, vend)``."""
    t, v, e = read(buf, off, end)
    if t != tag:
        raise VerifyError("malformed", "DER: expected tag 0x%02x, found 0x%02x" % (tag, t))
    return v, e


def natural(buf, voff, vend):
    """Check that ``buf[voff:vend]`` is the content of a non-negative, minimally
    encoded INTEGER (not empty, no sign bit, no needless leading zero)."""
    if voff < 0 or vend > len(buf) or vend <= voff:
        raise _bad("DER: empty INTEGER")
    b = buf[voff]
    if b & 0x80:
        raise _bad("DER: negative INTEGER")
    if b == 0 and vend - voff > 1 and not buf[voff + 1] & 0x80:
        raise _bad("DER: non-minimal INTEGER")


def uint(buf, voff, vend):
    """The value of a non-negative, minimally encoded INTEGER's content bytes."""
    natural(buf, voff, vend)
    n = 0
    for i in range(voff, vend):
        n = (n << 8) | buf[i]
    return n


def equal(buf_a, a_off, a_end, buf_b, b_off, b_end):
    """True when ``buf_a[a_off:a_end]`` and ``buf_b[b_off:b_end]`` hold the same bytes."""
    n = a_end - a_off
    if n != b_end - b_off:
        return False
    if a_off < 0 or b_off < 0 or n < 0 or a_end > len(buf_a) or b_end > len(buf_b):
        raise _bad("DER: span outside its buffer")
    d = b_off - a_off
    for i in range(a_off, a_end):
        if buf_a[i] != buf_b[i + d]:
            return False
    return True


def cert_names(cert):
    """Spans of the issuer and subject Name TLVs (tag included) of a DER Certificate.

    Walks Certificate -> TBSCertificate -> [version] serial signature issuer
    validity subject; checks only the tags on the way.
    """
    end = len(cert)
    v, e = expect(cert, 0, end, _SEQ)  # Certificate
    v, e = expect(cert, v, e, _SEQ)  # TBSCertificate
    tag, p, q = read(cert, v, e)
    if tag == _CTX0:  # version
        tag, p, q = read(cert, q, e)
    if tag != _INT:  # serialNumber
        raise _bad("DER: certificate serial is not an INTEGER")
    p, q = expect(cert, q, e, _SEQ)  # signature AlgorithmIdentifier
    iss = q
    p, iss_end = expect(cert, iss, e, _SEQ)  # issuer Name
    p, q = expect(cert, iss_end, e, _SEQ)  # validity
    sub = q
    p, sub_end = expect(cert, sub, e, _SEQ)  # subject Name
    return iss, iss_end, sub, sub_end


def check(buf, off, end, depth=8):
    """Check that ``[off, end)`` is a sequence of well-formed TLVs, nested ones too.

    Constructed values (bit 6 of the tag) must be filled exactly by their
    children, down to ``depth`` levels (at most 32); deeper nesting is
    malformed.  Iterative: a fixed list of container ends, no recursion.
    Returns the number of TLVs seen.
    """
    if depth > _MAX_DEPTH:
        depth = _MAX_DEPTH
    ends = [0] * (depth + 1)
    ends[0] = end
    level = 0
    count = 0
    while True:
        if off == ends[level]:
            if level == 0:
                return count
            level -= 1
            continue
        tag, v, e = read(buf, off, ends[level])
        count += 1
        if tag & _CONSTRUCTED and v < e:
            if level == depth:
                raise _bad("DER: nested too deep")
            level += 1
            ends[level] = e
            off = v
        else:
            off = e


# --- RSA (espconn.rsa re-exports it) --------------------------------------------
#
# RSA PKCS#1 v1.5 signature verification (RFC 8017 section 8.2.2), SHA-1 and SHA-256.
#
# Plain functions, no state.  The ESP8266 port has no three-argument ``pow()``,
# so the modular exponentiation is written out as left-to-right
# square-and-multiply over Python ints (MicroPython's mpz).  With the usual
# public exponent 65537 that is 17 squarings and one multiplication, each
# followed by one reduction: the largest temporary is a product of two
# modulus-sized numbers (512 bytes for RSA-2048).
#
# The encoded message is checked byte for byte, never parsed:
#
#     EM = 00 01 FF..FF 00 || DigestInfo(hash OID, NULL params) || digest
#
# with at least 8 bytes of FF padding and the DigestInfo prefix exactly the DER
# that RFC 8017 (section 9.2, note 1) lists; the variant without the NULL
# parameters, BER length forms, trailing garbage and short padding are all
# rejected as ``bad_signature``.  Key limits (``weak_key`` /
# ``unsupported_algorithm``) keep the work per signature bounded.

# Hash identifiers used by x509.py and the tests.
SHA1 = const(1)
SHA256 = const(2)


_MIN_PAD = const(8)  # PS is at least 8 bytes of 0xFF (RFC 8017 9.2 step 3)
MAX_BITS = const(4096)  # largest modulus accepted: bounds the work per signature
_MAX_E_BITS = const(32)  # largest public exponent: bounds the number of squarings


def modexp(base, exp, mod):
    """``base ** exp % mod`` for ints, without three-argument ``pow()``.

    Left-to-right binary method: one squaring per bit of ``exp`` and one
    multiplication per set bit, each reduced at once so no temporary exceeds
    twice the size of ``mod``.
    """
    if mod <= 0 or exp < 0:
        raise ValueError("modexp: bad arguments")
    if mod == 1:
        return 0
    if base < 0 or base >= mod:  # verify() passes 0 <= s < n: no 0.5 KiB copy then
        base %= mod
    # Top bit of exp; int.bit_length() is missing on MicroPython.
    top = 0
    while (exp >> top) > 1:
        top += 1
    result = 1
    if exp == 0:
        return result
    collect = None
    if _MP:
        # Each step leaves ~1.5 KiB of garbage in 0.5 KiB pieces (RSA-2048):
        # collecting it at once keeps the peak near the live set instead of
        # letting the pieces fragment the heap.
        import gc

        collect = gc.collect
    i = top
    while i >= 0:
        # Two statements, not (r * r) % mod: the old result is garbage before
        # the reduction allocates its quotient and remainder.
        result = result * result
        result = result % mod
        if (exp >> i) & 1:
            result = result * base
            result = result % mod
        if collect:
            collect()
        i -= 1
    return result


def bits(n):
    """Number of significant bits of the unsigned big-endian integer in buffer ``n``."""
    i = 0
    end = len(n)
    while i < end and n[i] == 0:
        i += 1
    if i == end:
        return 0
    b = n[i]
    nb = 0
    while b:
        nb += 1
        b >>= 1
    return (end - i - 1) * 8 + nb


def check_key(n, e, min_bits=1024):
    """Check an RSA public key: ``n`` big-endian modulus buffer, ``e`` int exponent.

    Returns the modulus size in bits.  ``weak_key`` for a modulus shorter than
    ``min_bits``, an even modulus or an exponent that is even or below 3;
    ``unsupported_algorithm`` for a modulus above MAX_BITS or an exponent of
    more than 32 bits (both would make one signature check cost too much).
    """
    nbits = bits(n)
    if nbits > MAX_BITS:
        raise VerifyError("unsupported_algorithm", "RSA-%d" % nbits)
    if nbits < min_bits:
        raise VerifyError("weak_key", "RSA-%d" % nbits)
    if not n[len(n) - 1] & 1:
        raise VerifyError("weak_key", "RSA modulus")
    if e < 3 or not e & 1:
        raise VerifyError("weak_key", "RSA exponent")
    if e >> _MAX_E_BITS:
        raise VerifyError("unsupported_algorithm", "RSA exponent")
    return nbits


def verify(n, e, sig, digest, hash_id):
    """Check a PKCS#1 v1.5 signature; return None or raise VerifyError("bad_signature").

    ``n``: modulus, big-endian buffer (a leading 00 byte, as in a DER INTEGER, is
    allowed); ``e``: public exponent (int); ``sig``: the signature buffer, which
    must be exactly as long as the modulus; ``digest``: the hash of the signed
    data; ``hash_id``: SHA1 or SHA256.  Call check_key() first: this function
    trusts the key's size.  Buffers may be memoryviews: nothing is copied.
    """
    # The DigestInfo prefix: _K[po:po + plen] (see _K).
    if hash_id == SHA1:
        po = _K_SHA1
        plen = 15
        hlen = 20
    elif hash_id == SHA256:
        po = _K_SHA256
        plen = 19
        hlen = 32
    else:
        raise VerifyError("unsupported_algorithm", "hash")
    if len(digest) != hlen:
        raise VerifyError("bad_signature", "RSA signature")
    # k: modulus length in bytes, without a DER sign byte.
    k = (bits(n) + 7) // 8
    if len(sig) != k:
        raise VerifyError("bad_signature", "RSA signature")
    tlen = plen + hlen
    if k < tlen + _MIN_PAD + 3:
        raise VerifyError("bad_signature", "RSA signature")
    if _MP:
        # The exponentiation needs a few KiB in 0.5 KiB pieces (RSA-2048):
        # free the garbage first so the pieces come from one clean region.
        import gc

        gc.collect()
    mod = int.from_bytes(n, "big")
    s = int.from_bytes(sig, "big")
    if s >= mod:
        raise VerifyError("bad_signature", "RSA signature")
    em = modexp(s, e, mod).to_bytes(k, "big")
    s = mod = 0  # drop the big ints before comparing
    ok = em[0] == 0 and em[1] == 1
    sep = k - tlen - 1  # index of the 00 separator
    i = 2
    while i < sep:
        ok = ok and em[i] == 0xFF
        i += 1
    # The prefix and the digest fill the rest exactly (k = sep + 1 + tlen).
    ok = ok and em[sep] == 0 and equal(em, sep + 1, sep + 1 + plen, _K, po, po + plen)
    ok = ok and equal(em, k - hlen, k, digest, 0, hlen)
    if not ok:
        raise VerifyError("bad_signature", "RSA signature")


# --- names (espconn.names re-exports it) ----------------------------------------
#
# Host name and IP address matching for certificate checks.
#
#     parse_ip(text) -> bytes or None
#     match_dns(pattern, host) -> bool
#
# ``parse_ip`` is strict, because a string that is not clearly an address must
# not be checked as one (nor, by ``match_dns``, as a DNS name):
#   - IPv4: exactly four dot-separated decimal numbers 0..255, one to three
#     digits each, no leading zeros ("01.2.3.4" is refused: inet_aton reads it as
#     octal, other parsers as decimal), no shorthand ("1.2.3", "1.2.0x3.4"), no
#     trailing dot, no spaces or signs.
#   - IPv6 (RFC 4291 2.2): eight groups of 1..4 hex digits, one "::" standing
#     for at least one zero group, optionally ending in a dotted IPv4 address
#     (parsed as above) in the last 32 bits.  No brackets, no zone ("%eth0"),
#     no prefix length.
#   -> 4 or 16 bytes in network order; anything else -> None.
#
# ``match_dns`` follows RFC 6125 section 6.4: a pattern (a subjectAltName
# dNSName or, for legacy certificates, a CN) matches a host name when they are
# equal ignoring ASCII case and one trailing dot.  A "*" is allowed only as the
# whole left-most label and stands for exactly one non-empty label; it needs at
# least two labels after it ("*.com", "*" never match), partial-label wildcards
# ("f*.example.com", "*x.example.com") never match, and neither does any
# pattern for a host that is an IP address (addresses are checked against
# iPAddress entries by the verifier, byte for byte).  A name whose right-most
# label starts with a digit ("1.2.3", "01.2.3.4": forms inet_aton reads as
# addresses) is not a host name and matches nothing.  Names must be ASCII
# (IDNs as A-labels), labels 1..63 bytes of letters, digits, "-" and "_", the
# whole name at most 253 bytes; anything else does not match.  There is no
# public-suffix list: "*.co.uk" matches "x.co.uk".

_MAX_NAME = const(253)  # RFC 1035 2.3.4, without the trailing dot
_MAX_LABEL = const(63)


def _ipv4(text, out, pos):
    # Dotted quad into out[pos:pos + 4]; False if not one.  Each part "0".."255":
    # 1..3 ASCII digits (strip() leaves nothing else), no leading zero.
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for i in range(4):
        p = parts[i]
        n = len(p)
        if n == 0 or n > 3 or p.strip("0123456789") or (n > 1 and p[0] == "0"):
            return False
        v = int(p)
        if v > 255:
            return False
        out[pos + i] = v
    return True


def _groups(text, out, pos, limit, v4):
    # Colon-separated groups of 1..4 hex digits of ``text`` written at
    # out[pos:]; the last one may be a dotted IPv4 address (two groups' worth)
    # when ``v4`` (the text ends the address).  At most ``limit`` groups.
    # Returns the number of 16-bit groups written, -1 if malformed.
    if text == "":
        return 0
    parts = text.split(":")
    n = 0
    for i in range(len(parts)):
        p = parts[i]
        if "." in p:
            if not v4 or i != len(parts) - 1 or n + 2 > limit or not _ipv4(p, out, pos + 2 * n):
                return -1
            return n + 2
        # strip() leaves nothing but for a non-hex character: no "0x", sign,
        # space or "_" reaches int().
        if not 0 < len(p) <= 4 or p.strip("0123456789abcdefABCDEF") or n >= limit:
            return -1
        v = int(p, 16)
        out[pos + 2 * n] = v >> 8
        out[pos + 2 * n + 1] = v & 0xFF
        n += 1
    return n


def parse_ip(text):
    """Strict IPv4 (dotted quad) or IPv6 text -> 4 or 16 bytes; else None."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except Exception:
            return None
    if not isinstance(text, str) or not text:
        return None
    if ":" not in text:
        if len(text) > 15:
            return None
        out = bytearray(4)
        return bytes(out) if _ipv4(text, out, 0) else None
    # IPv6
    if len(text) > 45:  # longest form: 6 groups of 4, ':' x 6, 15-char IPv4
        return None
    out = bytearray(16)
    i = text.find("::")
    if i < 0:
        if _groups(text, out, 0, 8, True) != 8:
            return None
        return bytes(out)
    head = text[:i]
    tail = text[i + 2 :]
    if "::" in tail or (tail[:1] == ":") or (head[-1:] == ":") or (head[:1] == ":") or tail[-1:] == ":":
        return None
    nh = _groups(head, out, 0, 7, False)
    if nh < 0:
        return None
    # The tail is parsed into a scratch buffer, then moved to the end.
    tmp = bytearray(16)
    nt = _groups(tail, tmp, 0, 7 - nh, True)
    if nt < 0 or nh + nt > 7:  # "::" stands for at least one zero group
        return None
    out[16 - 2 * nt :] = tmp[: 2 * nt]
    return bytes(out)


def _labels(name, wildcard):
    # A name -> its lower-cased label list, or None when it is not a
    # well-formed host name (or pattern, when ``wildcard`` allows a leading "*").
    if name[-1:] == ".":
        name = name[:-1]
    if not name or len(name) > _MAX_NAME:
        return None
    for ch in name:
        o = ord(ch)
        if not (
            48 <= o <= 57 or 65 <= o <= 90 or 97 <= o <= 122 or o == 45 or o == 46 or o == 95 or (o == 42 and wildcard)
        ):
            return None
    labels = name.lower().split(".")  # ASCII only by now: plain case folding
    for i in range(len(labels)):
        lab = labels[i]
        if not lab or len(lab) > _MAX_LABEL:
            return None
        if "*" in lab and (i != 0 or lab != "*"):
            return None  # partial-label or non-left-most wildcard
    # The right-most label is a top-level domain, which never starts with a
    # digit: "01.2.3.4", "1.2.3" or "1.2.3.0x4" are addresses to inet_aton,
    # never host names.
    last = labels[-1]
    if "0" <= last[0] <= "9":
        return None
    return labels


def match_dns(pattern, host):
    """True when the certificate name ``pattern`` (bytes or str) covers ``host``."""
    if isinstance(pattern, (bytes, bytearray, memoryview)):
        for b in pattern:
            if b >= 0x80:
                return False
        pattern = bytes(pattern).decode()
    if not isinstance(pattern, str) or not isinstance(host, str):
        return False
    if parse_ip(host) is not None:
        return False
    h = _labels(host, False)
    p = _labels(pattern, True)
    if h is None or p is None or len(h) != len(p):
        return False
    start = 0
    if p[0] == "*":
        if len(p) < 3:  # "*.com", "*": too broad
            return False
        start = 1
    for i in range(start, len(p)):
        if p[i] != h[i]:
            return False
    return True


# --- dates ----------------------------------------------------------------------


def _digits(buf, off, n):
    v = 0
    for i in range(off, off + n):
        d = buf[i] - 0x30
        if d < 0 or d > 9:
            raise _bad("time")
        v = v * 10 + d
    return v


def civil_to_unix(y, mo, d, h, mi, s):
    """Unix seconds of a UTC date and time; ValueError if it does not exist."""
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not (1 <= mo <= 12 and 1 <= d and h <= 23 and mi <= 59 and s <= 59) or d > _K[_K_MDAYS + mo - 1] + (mo == 2 and leap):
        raise ValueError("bad date")
    # Leap days in [1970, y): leap years in [1, y) (floor division keeps year 0
    # right) minus the 477 before 1970.
    p = y - 1
    days = (y - 1970) * 365 + p // 4 - p // 100 + p // 400 - 477 + d - 1
    for i in range(mo - 1):  # the months before
        days += _K[_K_MDAYS + i]
    if mo > 2 and leap:
        days += 1
    return ((days * 24 + h) * 60 + mi) * 60 + s


def _time(buf, off, end):
    """One Time (UTCTime or GeneralizedTime) at off -> (unix seconds, next offset)."""
    tag, v, e = read(buf, off, end)
    if tag == _UTCTIME:
        if e - v != 13:
            raise _bad("time")
        y = _digits(buf, v, 2)
        y += 1900 if y >= 50 else 2000
        v += 2
    elif tag == _GENTIME:
        if e - v != 15:
            raise _bad("time")
        y = _digits(buf, v, 4)
        v += 4
    else:
        raise _bad("structure")
    if buf[e - 1] != 0x5A:  # 'Z'
        raise _bad("time")
    try:
        t = civil_to_unix(
            y, _digits(buf, v, 2), _digits(buf, v + 2, 2), _digits(buf, v + 4, 2), _digits(buf, v + 6, 2), _digits(buf, v + 8, 2)
        )
    except ValueError:
        raise _bad("time")
    return t, e


# --- parsing --------------------------------------------------------------------


def _bit_string(c, off, end, ku=False):
    # BIT STRING filling [off, end) -> offset of its first content byte after
    # the unused-bits count, which must be 0; for keyUsage (ku) -> that first
    # byte (unused bits allowed, 0 if no bits).
    v, e = expect(c, off, end, _BITS)
    if e != end or e == v or c[v] > (7 if ku else 0):
        raise _bad("structure")
    if ku:
        return c[v + 1] if e - v > 1 else 0
    return v + 1


def _int(c, off, end):
    # An INTEGER TLV at off: content non-empty, non-negative, minimal -> (voff, vend).
    v, e = expect(c, off, end, _INT)
    natural(c, v, e)
    return v, e


def _parse(c):
    """Walk one DER certificate (a memoryview); return the field tuple (see _TBS_OFF...)."""
    ex = expect  # locals: shorter bytecode than x at each of the many calls
    rd = read
    eq = equal
    end = len(c)
    v, e = ex(c, 0, end, _SEQ)
    if e != end:
        raise _bad("structure")
    tbs_off = v
    t, tbs_end = ex(c, v, e, _SEQ)
    alg_off = tbs_end
    a, a_end = ex(c, alg_off, e, _SEQ)
    sig_off = _bit_string(c, a_end, e)
    sig_end = e
    # AlgorithmIdentifier -> hash id, 0 if not supported.  Parameters: absent
    # or NULL for the PKCS#1 v1.5 algorithms (RFC 4055 5); anything else (PSS
    # parameters...) is another algorithm.
    h = 0
    o, q = ex(c, a, a_end, _OID)
    tag = _NULL
    po = pe = q
    if q != a_end:
        tag, po, pe = rd(c, q, a_end)
    if tag == _NULL and po == pe and pe == a_end and q - o == 9 and eq(c, o, o + 8, _K, _K_RSA, _K_RSA + 8):
        if c[o + 8] == _PKCS1_SHA256:
            h = SHA256
        elif c[o + 8] == _PKCS1_SHA1:
            h = SHA1

    # tbsCertificate
    version = 0
    p = t
    if p < tbs_end and c[p] == _CTX0:
        v, p = ex(c, p, tbs_end, _CTX0)
        io, ie = ex(c, v, p, _INT)
        # Only v2 (1) and v3 (2): v1 is the DEFAULT, never written in DER.
        if ie != p or ie - io != 1 or not 1 <= c[io] <= 2:
            raise _bad("structure")
        version = c[io]
    v, p = _int(c, p, tbs_end)  # serialNumber: 1..20 octets (RFC 5280 4.1.2.2)
    if p - v > 20:
        raise _bad("serial")
    tag, v, e = rd(c, p, tbs_end)
    if tag != _SEQ or e - p != a_end - alg_off or not eq(c, p, e, c, alg_off, a_end):
        raise _bad("structure")
    iss_off = e
    v, iss_end = ex(c, iss_off, tbs_end, _SEQ)
    v, e = ex(c, iss_end, tbs_end, _SEQ)
    nb, p = _time(c, v, e)
    na, p = _time(c, p, e)
    if p != e:
        raise _bad("structure")
    sub_off = e
    v, sub_end = ex(c, sub_off, tbs_end, _SEQ)

    # SubjectPublicKeyInfo
    spki_off = sub_end
    v, spki_end = ex(c, spki_off, tbs_end, _SEQ)
    ao, ae = ex(c, v, spki_end, _SEQ)
    n_off = n_end = 0
    exp = 0
    oo, oe = ex(c, ao, ae, _OID)
    k = _bit_string(c, ae, spki_end)
    if eq(c, oo, oe, _K, _K_RSA, _K_RSA + 9):
        # rsaEncryption: parameters NULL (RFC 3279 2.3.1); RSAPublicKey ::=
        # SEQUENCE { modulus INTEGER, publicExponent INTEGER }, both minimal.
        tag, po, pe = rd(c, oe, ae)
        ko, ke = ex(c, k, spki_end, _SEQ)
        if tag != _NULL or po != pe or pe != ae or ke != spki_end:
            raise _bad("structure")
        n_off, n_end = _int(c, ko, ke)
        eo, ee = _int(c, n_end, ke)
        if ee != ke:
            raise _bad("structure")
        # -1: longer than 32 bits (unsupported); a zero exponent becomes 1,
        # which check_key refuses as weak_key like any e < 3.
        exp = (uint(c, eo, ee) or 1) if ee - eo <= 5 else -1
    p = spki_end

    ca = -1 if version else -2
    pathlen = -1
    ku = -1
    eku = -1
    san_off = san_end = 0
    step = 0  # 1: after issuerUniqueID, 2: after subjectUniqueID, 3: after the extensions
    while p < tbs_end:
        tag, v, e = rd(c, p, tbs_end)
        p = e
        if version and tag - 0x80 > step and tag <= _CTX2:
            step = tag - 0x80  # [1] then [2], each at most once
            continue
        if tag != _CTX3 or version != 2 or step == 3:
            raise _bad("structure")
        step = 3
        x0, xe = ex(c, v, e, _SEQ)
        if xe != e or x0 == xe:
            raise _bad("extensions")
        xo = x0
        while xo < xe:
            s0 = xo
            so, se = ex(c, xo, xe, _SEQ)
            xo = se
            oo, oe = ex(c, so, se, _OID)
            q = x0
            while q < s0:  # each extension OID once (RFC 5280 4.2)
                tag, qo, q = rd(c, q, s0)
                qo, qe = ex(c, qo, q, _OID)
                if eq(c, qo, qe, c, oo, oe):
                    raise _bad("extensions")
            tag, vo, ve = rd(c, oe, se)
            crit = False
            if tag == _BOOL:
                # critical BOOLEAN DEFAULT FALSE: present only as TRUE (0xFF)
                if ve - vo != 1 or c[vo] != 0xFF:
                    raise _bad("extensions")
                crit = True
                tag, vo, ve = rd(c, ve, se)
            if tag != _OCTETS or ve != se:
                raise _bad("extensions")
            kind = 0
            if oe - oo == 3 and c[oo] == 0x55 and c[oo + 1] == _ID_CE:
                kind = c[oo + 2]
            if kind == _CE_BC:
                bo, be = ex(c, vo, ve, _SEQ)
                if be != ve:
                    raise _bad("extensions")
                ca = 0
                if bo < be and c[bo] == _BOOL:
                    q, bo = ex(c, bo, be, _BOOL)
                    if bo - q != 1 or (c[q] != 0 and c[q] != 0xFF):
                        raise _bad("extensions")
                    ca = 1 if c[q] else 0
                if bo < be:
                    q, qe = _int(c, bo, be)
                    if qe != be or qe - q > 5:  # up to 2^32 - 1
                        raise _bad("extensions")
                    pathlen = uint(c, q, qe)
            elif kind == _CE_KU:
                q = _bit_string(c, vo, ve, True)
                ku = 1 if q & 0x04 else 0  # bit 5 keyCertSign: 0x04 of the first byte
            elif kind == _CE_SAN:
                san_off, san_end = ex(c, vo, ve, _SEQ)
                if san_end != ve or san_off == san_end:
                    raise _bad("extensions")
                q = san_off
                while q < san_end:  # every GeneralName well formed
                    tag, qo, q = rd(c, q, san_end)
            elif kind == _CE_EKU:
                q, qe = ex(c, vo, ve, _SEQ)
                if qe != ve or q == qe:  # SEQUENCE SIZE (1..MAX) OF KeyPurposeId
                    raise _bad("extensions")
                eku = 0
                while q < qe:
                    qo, q = ex(c, q, qe, _OID)
                    if q - qo == 8 and eq(c, qo, q - 1, _K, _K_KP, _K_KP + 7) and 0 < c[q - 1] < 30:
                        eku |= 1 << c[q - 1]
                    elif eq(c, qo, q, _K, _K_ANY_EKU, _K_ANY_EKU + 4):
                        eku |= 1
            elif kind == _CE_SKI or kind == _CE_AKI:
                if crit:  # RFC 5280 4.2.1.1, 4.2.1.2: never critical
                    raise _bad("extensions")
            elif crit:
                raise _fail("unknown_critical_extension", "certificate")
    if _MP:
        # The walk left a tuple per TLV as garbage: collect it first, so the
        # fields (held through the check) go low in the heap, not between the
        # free blocks the RSA work needs.
        import gc

        gc.collect()
    return (
        tbs_off, tbs_end, h, sig_off, sig_end, iss_off, iss_end, sub_off, sub_end, nb, na,
        n_off, n_end, exp, ca, pathlen, ku, san_off, san_end, spki_off, spki_end, eku,
        eq(c, iss_off, iss_end, c, sub_off, sub_end),
    )  # fmt: skip


# --- checks ---------------------------------------------------------------------


def _check_cert(c, info, now, mode, pol, what):
    # Dates, then the key.  mode 0: full window at now; 1: unset clock,
    # notAfter >= release; 2: no dates.
    if mode == 1 and info[_NOT_AFTER] < pol.release:
        raise _fail("expired", what)
    if mode == 0:
        if now < info[_NOT_BEFORE]:
            raise _fail("not_yet_valid", what)
        if now > info[_NOT_AFTER]:
            raise _fail("expired", what)
    if info[_E] <= 0:  # not an RSA key, or an exponent over 32 bits
        raise _fail("unsupported_algorithm", what)
    try:
        check_key(c[info[_N_OFF] : info[_N_END]], info[_E], pol.min_rsa_bits)
    except VerifyError as exc:
        raise VerifyError(exc.reason, what + ": " + exc.msg)


def _check_sig(c, info, ic, iinfo, pol, what, left, own=False):
    # Is c (fields info) signed by the key of ic (fields iinfo)?  ``left``:
    # [signature checks left]; ``own``: an anchor's own signature (integrity).
    h = info[_HASH]
    if h == 0:
        raise _fail("unsupported_algorithm", what)
    if h == SHA1 and not pol.allow_sha1 and not own:
        raise _fail("weak_hash", what)
    if left[0] <= 0:
        left[0] = -1  # out of budget: the search stops (see verify_chain)
        raise _fail("chain_too_long", "chain")
    left[0] -= 1
    import hashlib

    d = hashlib.sha256() if h == SHA256 else hashlib.sha1()
    d.update(c[info[_TBS_OFF] : info[_TBS_END]])
    d = d.digest()  # the hash object is garbage before the RSA work
    try:
        verify(ic[iinfo[_N_OFF] : iinfo[_N_END]], iinfo[_E], c[info[_SIG_OFF] : info[_SIG_END]], d, h)
    except VerifyError as exc:
        if own:
            raise _fail("bad_anchor", what)
        raise VerifyError(exc.reason, what + ": " + exc.msg)


def _trust(a, ai, pol, left, seen):
    # A self-issued anchor is trusted only with a valid signature by its own
    # key: a flipped byte in a stored CA shows here.  ``seen``: SHA-256 of the
    # anchors already checked (the store keeps it across connections).
    if not ai[_SELF]:
        return
    import hashlib

    h = hashlib.sha256(a).digest()
    if seen is not None and h in seen:
        return
    _check_sig(a, ai, a, ai, pol, "anchor", left, True)
    if seen is not None:
        if len(seen) >= _CACHE:
            seen.pop(0)
        seen.append(h)


def _check_name(c, info, name, pol):
    ip = parse_ip(name)
    so = info[_SAN_OFF]
    se = info[_SAN_END]
    if se:
        q = so
        while q < se:
            tag, v, q = read(c, q, se)
            if ip is not None:
                if tag == _GN_IP and equal(c, v, q, ip, 0, len(ip)):
                    return
            elif tag == _GN_DNS and match_dns(bytes(c[v:q]), name):
                return
        raise _fail("name_mismatch", name)
    if not pol.cn_fallback:
        raise _fail("name_mismatch", name)
    # Subject CN(s): Name ::= SEQUENCE OF SET OF AttributeTypeAndValue.
    v, e = expect(c, info[_SUB_OFF], info[_SUB_END], _SEQ)
    while v < e:
        so, se = expect(c, v, e, _SET)
        v = se
        while so < se:
            ao, ae = expect(c, so, se, _SEQ)
            so = ae
            oo, oe = expect(c, ao, ae, _OID)
            tag, to, te = read(c, oe, ae)
            if not equal(c, oo, oe, _K, _K_CN, _K_CN + 3):
                continue
            if tag not in (0x0C, 0x13, 0x14, 0x16):  # UTF8, Printable, Teletex, IA5
                continue
            cn = bytes(c[to:te])
            if ip is not None:
                try:
                    if parse_ip(cn.decode()) == ip:
                        return
                except ValueError:  # not UTF-8 (UnicodeError is a ValueError)
                    pass
            elif match_dns(cn, name):
                return
    raise _fail("name_mismatch", name)


def _link(cur, info, c, n, anchor, now, mode, pol, left, seen):
    # Is certificate c (anchor or sent) a valid issuer of cur?  Its fields, or raise.
    what = "anchor" if anchor else "intermediate"
    ci = _parse(c)
    # n: non-self-issued intermediates under this issuer in the path.
    ca = ci[_CA]
    if ca != 1 and not (ca == -2 and anchor and pol.anchor_without_ca):
        raise _fail("not_a_ca", what)
    if ci[_KU] == 0:
        raise _fail("key_usage", what)
    if ci[_PATHLEN] >= 0 and n > ci[_PATHLEN]:
        raise _fail("path_len", what)
    _check_cert(c, ci, now, mode, pol, what)
    if anchor:
        _trust(c, ci, pol, left, seen)
    _check_sig(cur, info, c, ci, pol, "certificate", left)
    return ci


def verify_chain(certs, anchors, now=None, name=None, policy=None, verified=None):
    """Verify the peer's chain; return None or raise VerifyError (see the module docstring).

    ``verified``: the list of SHA-256 of anchors whose own signature was checked
    (as a store's ``.verified``), for anchors given as a list."""
    global _default
    pol = policy
    if pol is None:
        if _default is None:
            _default = Policy()
        pol = _default
    if name is not None and not isinstance(name, str):
        raise _fail("bad_name", "name")
    count = len(certs)
    if count == 0:
        raise _fail("malformed", "chain")
    limit = pol.max_chain
    if count > limit:
        raise _fail("chain_too_long", "chain")
    mode = 0  # 0: full window at now; 1: unset clock, notAfter >= release; 2: skip
    if now is None:
        now = pol.clock() if pol.clock is not None else unix_time()
        if now < pol.release:
            if pol.unset_clock == "refuse":
                raise _fail("clock_unset", "clock")
            mode = 2 if pol.unset_clock == "skip" else 1
    find = getattr(anchors, "issuers", None)
    seen = verified if verified is not None else getattr(anchors, "verified", None)
    if find is None:
        lst = list(anchors)

        def find(buf, off, end):
            # Anchors given as a list, looked up like the CA store's issuers():
            # those whose subject equals the Name buf[off:end].  A malformed one
            # is skipped: it names nothing.
            for a in lst:
                m = memoryview(a)
                try:
                    s0, s1 = cert_names(m)[2:]
                except VerifyError:
                    continue
                if equal(m, s0, s1, buf, off, end):
                    yield a

    cur = memoryview(certs[0])
    info = _parse(cur)
    _check_cert(cur, info, now, mode, pol, "leaf")
    if not info[_EKU] & (1 | 1 << pol.purpose):  # -1 (absent) allows all
        raise _fail("ext_key_usage", "leaf")
    if name is not None:
        _check_name(cur, info, name, pol)

    # Depth-first search, iterative: path[d] is the index in certs of the
    # certificate at depth d (0: the leaf), path[limit + d] the number of
    # non-self-issued intermediates at depths 1..d (RFC 5280 6.1.4 (l)).  Only
    # the current certificate's fields are held: backing up parses again.
    path = bytearray(2 * limit)
    used = bytearray(count)  # sent certificates on the current path
    used[0] = 1
    left = [2 * limit + 2]  # signature checks left: bounds the work
    score = -1  # how deep the best failure got: 2d at a dead end at depth d, 2d+1 for a refused issuer of it
    best = None
    d = 0
    j = 0  # next candidate at depth d: 0 the anchors, then certs[j]
    while True:
        io = info[_ISS_OFF]
        ie = info[_ISS_END]
        if j == 0:
            # Anchors named as cur's issuer first: one that works ends the search.
            # All fetched in one scan before any RSA work: the store's scan
            # (generators, buffers) is gone by then, so the big numbers find
            # whole free blocks (1.3 KB less heap on a 32-bit build, RSA-2048).
            for a in list(find(cur, io, ie)):
                am = memoryview(a)
                try:
                    if equal(am, 0, len(am), cur, 0, len(cur)):
                        _trust(am, info, pol, left, seen)  # cur itself is trusted
                        return
                    if d + 2 > limit:
                        raise _fail("chain_too_long", "chain")
                    _link(cur, info, am, path[limit + d], True, now, mode, pol, left, seen)
                    return
                except VerifyError as exc:
                    if left[0] < 0:
                        raise
                    if score < 2 * d + 1:
                        score = 2 * d + 1
                        best = exc
            j = 1
        ci = None
        while j < count:
            if not used[j]:
                c = memoryview(certs[j])
                try:
                    s0, s1 = cert_names(c)[2:]
                    if equal(c, s0, s1, cur, io, ie):
                        if d + 3 > limit:
                            raise _fail("chain_too_long", "chain")
                        ci = _link(cur, info, c, path[limit + d], False, now, mode, pol, left, seen)
                        break
                except VerifyError as exc:
                    if left[0] < 0:
                        raise
                    if score < 2 * d + 1:
                        score = 2 * d + 1
                        best = exc
            j += 1
        if ci is not None:  # down to the issuer found
            used[j] = 1
            d += 1
            path[d] = j
            path[limit + d] = path[limit + d - 1] + (0 if ci[_SELF] else 1)
            cur = c
            info = ci
            j = 0
            continue
        if score < 2 * d:
            score = 2 * d
            best = _fail("unknown_issuer", "certificate %d" % d)
        if d == 0:
            raise best  # type: ignore[misc]  # set: score >= 0 here
        # Back up: the next candidate after this one, one level up.
        j = path[d] + 1
        used[path[d]] = 0
        d -= 1
        cur = memoryview(certs[path[d]])
        info = _parse(cur)


# --- pinning --------------------------------------------------------------------


def cert_sha256(cert):
    """SHA-256 of the whole DER certificate (32 bytes)."""
    import hashlib

    return hashlib.sha256(cert).digest()


def spki_sha256(cert):
    """SHA-256 of the certificate's SubjectPublicKeyInfo TLV (as HPKP / pin-sha256)."""
    import hashlib

    c = memoryview(cert)
    info = _parse(c)
    return hashlib.sha256(c[info[_SPKI_OFF] : info[_SPKI_END]]).digest()


del const  # only the module body used it: one global less
