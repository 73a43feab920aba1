"""X.509 chain verification for the device: DER certificates in, one reason out.

    verify_chain(certs, anchors, now=None, name=None, policy=None) -> None
        or raise VerifyError(reason, message)

``certs`` is the peer's chain as sent (leaf first, then intermediates in any
order), each DER bytes/bytearray/memoryview; ``anchors`` an iterable of trusted
DER certificates or an object with ``.issuers(name_buf, off, end)`` (the flash
CA store, espconn.castore.CAStore); ``now`` unix seconds or None (see "Time");
``name`` a DNS name or IP address string, or None for no name check.

Certificates are walked in place over a memoryview with espconn.der: nothing
is copied, names are compared byte for byte, nothing recurses.  Work is
bounded: at most ``policy.max_chain`` certificates, at most 2 * max_chain + 2
signature checks, RSA moduli up to 4096 bits and exponents up to 32 bits.  The
first error met sticks: if no path works, the reason is the one recorded first.
Messages are "<which certificate>: <reason>" (one text per reason: every
distinct string would cost RAM on the board).

Memory: besides the certificates (never copied), a check holds a few small
tuples and views; an RSA-2048 signature needs about 3 KiB more, in 0.5 KiB
blocks (RSA-1024: half).  A heap too full or fragmented for that raises
MemoryError, which is passed on unchanged (the SDK layer reports ESPCONN_MEM).

Checked
  - DER structure of every certificate used (lengths inside their containers,
    no trailing bytes, v1..v3, extensions only in v3, identical inner and outer
    signature algorithms, BIT STRINGs without unused bits) -> malformed
  - chain building: leaf -> sent intermediates (any order, each used once) ->
    an anchor whose subject Name equals the issuer Name byte for byte; a sent
    certificate byte-identical to an anchor is trusted as it is -> unknown_issuer,
    chain_too_long
  - signatures: RSA PKCS#1 v1.5 with SHA-1 or SHA-256 (espconn.rsa) ->
    bad_signature; any other algorithm (SHA-384/512, ECDSA, PSS, MD5) ->
    unsupported_algorithm; SHA-1 refused when ``allow_sha1`` is off -> weak_hash
  - keys: every certificate in the path (leaf, intermediates, anchor) must hold
    an RSA key of at least ``min_rsa_bits`` -> weak_key / unsupported_algorithm
  - every issuer (intermediates and the anchor): basicConstraints cA -> not_a_ca;
    pathLenConstraint (intermediates below it, self-issued ones counted too) ->
    path_len; keyUsage, when present, must assert keyCertSign -> key_usage.
    An anchor with no basicConstraints at all (the SDK makefile.sh's v1 CA) is
    accepted as an issuer while ``anchor_without_ca`` is on (default).
  - validity of every certificate in the path, the anchor included, with inclusive
    bounds: UTCTime (YYMMDDHHMMSSZ, 1950..2049) and GeneralizedTime
    (YYYYMMDDHHMMSSZ, up to 9999) -> expired, not_yet_valid
  - critical extensions other than basicConstraints, keyUsage, subjectAltName,
    extKeyUsage, subjectKeyIdentifier, authorityKeyIdentifier ->
    unknown_critical_extension; a repeated known extension -> malformed
  - the name (leaf only): subjectAltName dNSName (espconn.names.match_dns: RFC
    6125 wildcards) and iPAddress entries; the subject CN only for certificates
    without subjectAltName and only with ``cn_fallback`` -> name_mismatch

Not checked (non-goals)
  - revocation (CRL, OCSP), certificate policies, name constraints (a critical
    nameConstraints extension is rejected, a non-critical one ignored),
    extKeyUsage purposes, authority/subject key identifiers
  - the anchor's own signature (an anchor is trusted because it is in the store)
  - a non-self-signed leaf pinned in the store is not trusted by itself; use
    cert_sha256() / spki_sha256() for pinning
  - DN normalisation: issuer and subject must be byte-identical

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
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from . import der, rsa
from .errors import VerifyError

# The firmware's release date, 2026-11-01T00:00:00Z in unix seconds: no
# certificate that expired before it can be valid now, and a clock reading
# earlier than it has not been set.
RELEASE_TIME = const(1793491200)
_EPOCH_2000 = const(946684800)  # 2000-01-01 in unix seconds: the ESP8266 epoch

_MAX_CHAIN = const(16)  # hard cap on policy.max_chain

# DER tags (see der.py).
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
_OID_RSA = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # 1.2.840.113549.1.1.1 rsaEncryption
_OID_PKCS1 = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01"  # 1.2.840.113549.1.1.x prefix
_PKCS1_SHA1 = const(5)  # sha1WithRSAEncryption
_PKCS1_SHA256 = const(11)  # sha256WithRSAEncryption
_OID_CN = b"\x55\x04\x03"  # 2.5.4.3 commonName
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
_HASH = const(2)  # rsa.SHA1 / rsa.SHA256, 0: unsupported signature algorithm
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
_CA = const(14)  # basicConstraints: -1 absent, 0 cA false, 1 cA true
_PATHLEN = const(15)  # -1: no pathLenConstraint
_KU = const(16)  # keyUsage: -1 absent, 0 without keyCertSign, 1 with
_SAN_OFF = const(17)  # subjectAltName GeneralNames content, both 0 if absent
_SAN_END = const(18)
_SPKI_OFF = const(19)  # SubjectPublicKeyInfo TLV
_SPKI_END = const(20)

# Days before each month, days in each month, in a common year.
_CUM_DAYS = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_MDAYS = b"\x1f\x1c\x1f\x1e\x1f\x1e\x1f\x1f\x1e\x1f\x1e\x1f"


class Policy:
    """What verify_chain() accepts beyond the fixed rules (see the module docstring).

    min_rsa_bits       smallest RSA modulus (default 1024; 512 is the lowest allowed)
    allow_sha1         accept sha1WithRSAEncryption (default True: the SDK signs with SHA-1)
    cn_fallback        match the name against the subject CN when there is no
                       subjectAltName (default False; legacy makefile.sh certificates)
    max_chain          most certificates in the peer's chain and in the path (default 5)
    anchor_without_ca  trust an anchor lacking basicConstraints as an issuer (default True)
    unset_clock        "release" (default), "skip" or "refuse": see "Time"
    release            unix seconds: the clock is valid from here on, and with an unset
                       clock no certificate may expire before it (default RELEASE_TIME)
    clock              function returning unix seconds (default: time.time())
    """

    def __init__(
        self,
        min_rsa_bits=1024,
        allow_sha1=True,
        cn_fallback=False,
        max_chain=5,
        anchor_without_ca=True,
        unset_clock="release",
        release=RELEASE_TIME,
        clock=None,
    ):
        if min_rsa_bits < 512 or not 1 <= max_chain <= _MAX_CHAIN or unset_clock not in ("release", "skip", "refuse"):
            raise ValueError("bad policy")
        self.min_rsa_bits = min_rsa_bits
        self.allow_sha1 = allow_sha1
        self.cn_fallback = cn_fallback
        self.max_chain = max_chain
        self.anchor_without_ca = anchor_without_ca
        self.unset_clock = unset_clock
        self.release = release
        self.clock = clock


_default = None  # the default Policy, made on first use


def _bad(msg):
    return VerifyError("malformed", msg)


def _fail(reason, what):
    # One message per reason: "<which certificate>: <reason>"; a text per
    # raise would cost RAM on the board for every string.
    return VerifyError(reason, what + ": " + reason)


def unix_time():
    """time.time() in unix seconds on any port (the ESP8266 counts from 2000)."""
    import time

    t = int(time.time())
    if time.gmtime(0)[0] == 2000:
        t += _EPOCH_2000
    return t


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
    if not (1 <= mo <= 12 and 1 <= d and h <= 23 and mi <= 59 and s <= 59) or d > _MDAYS[mo - 1] + (mo == 2 and leap):
        raise ValueError("bad date")
    # Leap days in [1970, y): leap years in [1, y) (floor division keeps year 0
    # right) minus the 477 before 1970.
    p = y - 1
    days = (y - 1970) * 365 + p // 4 - p // 100 + p // 400 - 477 + _CUM_DAYS[mo - 1] + d - 1
    if mo > 2 and leap:
        days += 1
    return ((days * 24 + h) * 60 + mi) * 60 + s


def _time(buf, off, end):
    """One Time (UTCTime or GeneralizedTime) at off -> (unix seconds, next offset)."""
    tag, v, e = der.read(buf, off, end)
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


def _sig_hash(c, off, end):
    # AlgorithmIdentifier content -> rsa hash id, 0 if not supported.
    o, e = der.expect(c, off, end, _OID)
    if e != end:
        # Parameters: absent or NULL for the PKCS#1 v1.5 algorithms (RFC 4055
        # 5); anything else (PSS parameters...) is another algorithm.
        tag, po, pe = der.read(c, e, end)
        if tag != _NULL or po != pe or pe != end:
            return 0
    if e - o == 9 and der.equal(c, o, o + 8, _OID_PKCS1, 0, 8):
        last = c[o + 8]
        if last == _PKCS1_SHA256:
            return rsa.SHA256
        if last == _PKCS1_SHA1:
            return rsa.SHA1
    return 0


def _bit_string(c, off, end, ku=False):
    # BIT STRING filling [off, end) -> offset of its first content byte after
    # the unused-bits count, which must be 0; for keyUsage (ku) -> that first
    # byte (unused bits allowed, 0 if no bits).
    v, e = der.expect(c, off, end, _BITS)
    if e != end or e == v or c[v] > (7 if ku else 0):
        raise _bad("structure")
    if ku:
        return c[v + 1] if e - v > 1 else 0
    return v + 1


def _parse(c):
    """Walk one DER certificate (a memoryview); return the field tuple (see _TBS_OFF...)."""
    end = len(c)
    v, e = der.expect(c, 0, end, _SEQ)
    if e != end:
        raise _bad("structure")
    tbs_off = v
    t, tbs_end = der.expect(c, v, e, _SEQ)
    alg_off = tbs_end
    a, a_end = der.expect(c, alg_off, e, _SEQ)
    sig_off = _bit_string(c, a_end, e)
    sig_end = e
    h = _sig_hash(c, a, a_end)

    # tbsCertificate
    tag, v, e = der.read(c, t, tbs_end)
    version = 0
    if tag == _CTX0:
        io, ie = der.expect(c, v, e, _INT)
        if ie != e or ie - io != 1 or c[io] > 2:
            raise _bad("structure")
        version = c[io]
        tag, v, e = der.read(c, e, tbs_end)
    if tag != _INT:
        raise _bad("structure")
    p = e
    tag, v, e = der.read(c, p, tbs_end)
    if tag != _SEQ or e - p != a_end - alg_off or not der.equal(c, p, e, c, alg_off, a_end):
        raise _bad("structure")
    iss_off = e
    v, iss_end = der.expect(c, iss_off, tbs_end, _SEQ)
    v, e = der.expect(c, iss_end, tbs_end, _SEQ)
    nb, p = _time(c, v, e)
    na, p = _time(c, p, e)
    if p != e:
        raise _bad("structure")
    sub_off = e
    v, sub_end = der.expect(c, sub_off, tbs_end, _SEQ)

    # SubjectPublicKeyInfo
    spki_off = sub_end
    v, spki_end = der.expect(c, spki_off, tbs_end, _SEQ)
    ao, ae = der.expect(c, v, spki_end, _SEQ)
    n_off = n_end = 0
    exp = 0
    oo, oe = der.expect(c, ao, ae, _OID)
    k = _bit_string(c, ae, spki_end)
    if oe - oo == 9 and der.equal(c, oo, oe, _OID_RSA, 0, 9):
        # rsaEncryption: RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        ko, ke = der.expect(c, k, spki_end, _SEQ)
        if ke != spki_end:
            raise _bad("structure")
        n_off, n_end = der.expect(c, ko, ke, _INT)
        eo, ee = der.expect(c, n_end, ke, _INT)
        if ee != ke or n_off == n_end or c[n_off] & 0x80 or eo == ee or c[eo] & 0x80:
            raise _bad("structure")
        # -1: longer than 32 bits (unsupported); a zero exponent becomes 1,
        # which rsa.check_key refuses as weak_key like any e < 3.
        exp = (der.uint(c, eo, ee) or 1) if ee - eo <= 5 else -1
    p = spki_end

    ca = -1
    pathlen = -1
    ku = -1
    san_off = san_end = 0
    seen = 0  # bit per known extension: a repeat is malformed
    step = 0  # 1: after the unique IDs, 2: after the extensions
    while p < tbs_end:
        tag, v, e = der.read(c, p, tbs_end)
        p = e
        if (tag == _CTX1 or tag == _CTX2) and version >= 1 and step == 0:
            continue
        if tag != _CTX3 or version != 2 or step == 2:
            raise _bad("structure")
        step = 2
        xo, xe = der.expect(c, v, e, _SEQ)
        if xe != e or xo == xe:
            raise _bad("extensions")
        while xo < xe:
            so, se = der.expect(c, xo, xe, _SEQ)
            xo = se
            oo, oe = der.expect(c, so, se, _OID)
            tag, vo, ve = der.read(c, oe, se)
            crit = False
            if tag == _BOOL:
                if ve - vo != 1 or (c[vo] != 0 and c[vo] != 0xFF):
                    raise _bad("extensions")
                crit = c[vo] == 0xFF
                tag, vo, ve = der.read(c, ve, se)
            if tag != _OCTETS or ve != se:
                raise _bad("extensions")
            kind = 0
            if oe - oo == 3 and c[oo] == 0x55 and c[oo + 1] == _ID_CE:
                kind = c[oo + 2]
            if kind == _CE_BC:
                bo, be = der.expect(c, vo, ve, _SEQ)
                if be != ve:
                    raise _bad("extensions")
                ca = 0
                if bo < be:
                    tag, q, qe = der.read(c, bo, be)
                    if tag == _BOOL:
                        if qe - q != 1 or (c[q] != 0 and c[q] != 0xFF):
                            raise _bad("extensions")
                        ca = 1 if c[q] else 0
                        bo = qe
                if bo < be:
                    q, qe = der.expect(c, bo, be, _INT)
                    if qe != be or qe - q > 2:
                        raise _bad("extensions")
                    pathlen = der.uint(c, q, qe)
            elif kind == _CE_KU:
                q = _bit_string(c, vo, ve, True)
                ku = 1 if q & 0x04 else 0  # bit 5 keyCertSign: 0x04 of the first byte
            elif kind == _CE_SAN:
                san_off, san_end = der.expect(c, vo, ve, _SEQ)
                if san_end != ve or san_off == san_end:
                    raise _bad("extensions")
                q = san_off
                while q < san_end:  # every GeneralName well formed
                    tag, qo, q = der.read(c, q, san_end)
            elif kind == _CE_EKU or kind == _CE_SKI or kind == _CE_AKI:
                pass  # known, not enforced (see the docstring)
            elif crit:
                raise _fail("unknown_critical_extension", "certificate")
            else:
                continue
            bit = 1 << (kind & 31)
            if seen & bit:
                raise _bad("extensions")
            seen |= bit
    return (
        tbs_off, tbs_end, h, sig_off, sig_end, iss_off, iss_end, sub_off, sub_end, nb, na,
        n_off, n_end, exp, ca, pathlen, ku, san_off, san_end, spki_off, spki_end,
    )  # fmt: skip


# --- checks ---------------------------------------------------------------------


def _check_key(c, info, pol, what):
    if info[_E] <= 0:  # not an RSA key, or an exponent over 32 bits
        raise _fail("unsupported_algorithm", what)
    try:
        rsa.check_key(c[info[_N_OFF] : info[_N_END]], info[_E], pol.min_rsa_bits)
    except VerifyError as exc:
        raise VerifyError(exc.reason, what + ": " + exc.msg)


def _check_dates(info, now, mode, pol, what):
    # mode 0: full window at now; 1: unset clock, notAfter >= release; 2: skip.
    if mode == 2:
        return
    if mode == 1:
        if info[_NOT_AFTER] < pol.release:
            raise _fail("expired", what)
        return
    if now < info[_NOT_BEFORE]:
        raise _fail("not_yet_valid", what)
    if now > info[_NOT_AFTER]:
        raise _fail("expired", what)


def _check_issuer(info, below, anchor, pol, what):
    # below: certificates under this issuer in the path (the leaf counts).
    ca = info[_CA]
    if ca != 1 and not (ca == -1 and anchor and pol.anchor_without_ca):
        raise _fail("not_a_ca", what)
    if info[_KU] == 0:
        raise _fail("key_usage", what)
    if info[_PATHLEN] >= 0 and below - 1 > info[_PATHLEN]:
        raise _fail("path_len", what)


def _check_sig(c, info, ic, iinfo, pol, what):
    h = info[_HASH]
    if h == 0:
        raise _fail("unsupported_algorithm", what)
    if h == rsa.SHA1 and not pol.allow_sha1:
        raise _fail("weak_hash", what)
    import hashlib

    d = hashlib.sha256() if h == rsa.SHA256 else hashlib.sha1()
    d.update(c[info[_TBS_OFF] : info[_TBS_END]])
    try:
        rsa.verify(ic[iinfo[_N_OFF] : iinfo[_N_END]], iinfo[_E], c[info[_SIG_OFF] : info[_SIG_END]], d.digest(), h)
    except VerifyError as exc:
        raise VerifyError(exc.reason, what + ": " + exc.msg)


def _check_name(c, info, name, pol):
    from . import names  # only when a name is checked: its code stays out of RAM otherwise

    ip = names.parse_ip(name)
    so = info[_SAN_OFF]
    se = info[_SAN_END]
    if se:
        q = so
        while q < se:
            tag, v, q = der.read(c, q, se)
            if ip is not None:
                if tag == _GN_IP and q - v == len(ip) and der.equal(c, v, q, ip, 0, len(ip)):
                    return
            elif tag == _GN_DNS and names.match_dns(bytes(c[v:q]), name):
                return
        raise _fail("name_mismatch", name)
    if not pol.cn_fallback:
        raise _fail("name_mismatch", name)
    # Subject CN(s): Name ::= SEQUENCE OF SET OF AttributeTypeAndValue.
    v, e = der.expect(c, info[_SUB_OFF], info[_SUB_END], _SEQ)
    while v < e:
        so, se = der.expect(c, v, e, _SET)
        v = se
        while so < se:
            ao, ae = der.expect(c, so, se, _SEQ)
            so = ae
            oo, oe = der.expect(c, ao, ae, _OID)
            tag, to, te = der.read(c, oe, ae)
            if oe - oo != 3 or not der.equal(c, oo, oe, _OID_CN, 0, 3):
                continue
            if tag not in (0x0C, 0x13, 0x14, 0x16):  # UTF8, Printable, Teletex, IA5
                continue
            cn = bytes(c[to:te])
            if ip is not None:
                try:
                    if names.parse_ip(cn.decode()) == ip:
                        return
                except ValueError:  # not UTF-8 (UnicodeError is a ValueError)
                    pass
            elif names.match_dns(cn, name):
                return
    raise _fail("name_mismatch", name)


def _among(certs, buf, off, end):
    # Anchors given as a list, looked up like the CA store's issuers(): yield
    # those whose subject equals the Name buf[off:end].
    for a in certs:
        m = memoryview(a)
        s0, s1 = der.cert_names(m)[2:]
        if s1 - s0 == end - off and der.equal(m, s0, s1, buf, off, end):
            yield a


def _clock_mode(now, pol):
    if now is not None:
        return now, 0
    t = pol.clock() if pol.clock is not None else unix_time()
    if t >= pol.release:
        return t, 0
    if pol.unset_clock == "skip":
        return t, 2
    if pol.unset_clock == "refuse":
        raise _fail("clock_unset", "clock")
    return t, 1


def _link(cur, info, c, below, anchor, now, mode, pol):
    # Is certificate c (anchor or sent) a valid issuer of cur?  None or raise.
    what = "anchor" if anchor else "intermediate"
    ci = _parse(c)
    _check_issuer(ci, below, anchor, pol, what)
    _check_dates(ci, now, mode, pol, what)
    _check_key(c, ci, pol, what)
    _check_sig(cur, info, c, ci, pol, "certificate")


def verify_chain(certs, anchors, now=None, name=None, policy=None):
    """Verify the peer's chain; return None or raise VerifyError (see the module docstring)."""
    global _default
    pol = policy
    if pol is None:
        if _default is None:
            _default = Policy()
        pol = _default
    count = len(certs)
    if count == 0:
        raise _fail("malformed", "chain")
    limit = pol.max_chain
    if count > limit:
        raise _fail("chain_too_long", "chain")
    now, mode = _clock_mode(now, pol)
    if hasattr(anchors, "issuers"):
        find = anchors.issuers
    else:
        lst = list(anchors)

        def find(buf, off, end):
            return _among(lst, buf, off, end)


    cur = memoryview(certs[0])
    info = _parse(cur)
    _check_key(cur, info, pol, "leaf")
    _check_dates(info, now, mode, pol, "leaf")
    if name is not None:
        _check_name(cur, info, name, pol)

    used = bytearray(count)  # sent certificates already in the path
    depth = 1  # certificates in the path so far
    sigs = 2 * limit + 2  # signature checks left: bounds the work
    first = None  # the first error met: it sticks
    while True:
        io = info[_ISS_OFF]
        ie = info[_ISS_END]
        nxt = 0
        # Anchors named as cur's issuer first, then the sent certificates.
        for a in find(cur, io, ie):
            am = memoryview(a)
            if len(am) == len(cur) and der.equal(am, 0, len(am), cur, 0, len(cur)):
                return  # cur itself is trusted
            try:
                if depth >= limit or sigs <= 0:
                    raise _fail("chain_too_long", "chain")
                sigs -= 1
                _link(cur, info, am, depth, True, now, mode, pol)
                return
            except VerifyError as exc:
                if first is None:
                    first = exc
        for j in range(1, count):
            if used[j]:
                continue
            c = memoryview(certs[j])
            try:
                s0, s1 = der.cert_names(c)[2:]
                if not (s1 - s0 == ie - io and der.equal(c, s0, s1, cur, io, ie)):
                    continue
                if depth + 1 >= limit or sigs <= 0:
                    raise _fail("chain_too_long", "chain")
                sigs -= 1
                _link(cur, info, c, depth, False, now, mode, pol)
            except VerifyError as exc:
                if first is None:
                    first = exc
                continue
            nxt = j
            break
        if not nxt:
            if first is None:
                first = _fail("unknown_issuer", "certificate %d" % (depth - 1))
            raise first
        used[nxt] = 1
        cur = memoryview(certs[nxt])
        info = _parse(cur)
        depth += 1


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
