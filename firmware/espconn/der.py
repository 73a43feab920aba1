"""A small DER walker for certificates, over bytes, bytearray or memoryview.

Plain functions on (buffer, offset, end) triples: nothing is copied, nothing
recurses, and every length is checked against the container it sits in, so
any byte sequence either yields spans inside ``[off, end)`` or raises
``VerifyError("malformed", ...)``.  Runs unchanged on MicroPython and CPython.

    read(buf, off, end)   -> (tag, voff, vend)   one TLV at off
    expect(buf, off, end, tag) -> (voff, vend)   read() and check the tag
    natural(buf, voff, vend)                     INTEGER content minimal, >= 0?
    uint(buf, voff, vend) -> int                 non-negative INTEGER value
    equal(a, ao, ae, b, bo, be) -> bool          byte compare of two spans
    cert_names(cert) -> (issuer_off, issuer_end, subject_off, subject_end)
    check(buf, off, end, depth=8) -> int         whole TLV tree well formed?

What is DER here (ITU-T X.690 section 10): single-byte tags only (the
high-tag-number form, low 5 bits all ones, is rejected), definite lengths
only, in their shortest form (a long form for a length under 128, or with a
leading zero byte, is rejected), at most 3 length bytes (16 MiB: far beyond
any certificate the device can hold).  INTEGERs read by ``uint`` must be
minimal and non-negative.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from .errors import VerifyError

# Tags this module needs (X.690 8.x; RFC 5280 4.1 for [0]).
_INT = const(0x02)
_SEQ = const(0x30)
_CTX0 = const(0xA0)
_CONSTRUCTED = const(0x20)  # bit 6 of the identifier octet
_HIGH_TAG = const(0x1F)  # low 5 bits all ones: multi-byte tag follows
_MAX_DEPTH = const(32)  # hard cap for check()


def _bad(what):
    return VerifyError("malformed", "DER: " + what)


def read(buf, off, end):
    """The TLV at ``off`` inside ``[off, end)`` -> ``(tag, voff, vend)``.

    ``voff``/``vend`` bound the value; ``vend <= end`` always holds.
    """
    if off < 0 or end > len(buf) or off + 2 > end:
        raise _bad("truncated TLV")
    tag = buf[off]
    if tag & _HIGH_TAG == _HIGH_TAG:
        raise _bad("multi-byte tag")
    n = buf[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise _bad("indefinite length")
        if k > 3:
            raise _bad("length too long")
        if off + k > end:
            raise _bad("truncated length")
        if buf[off] == 0:
            raise _bad("non-minimal length")
        n = buf[off]  # unrolled: no range object per TLV
        if k > 1:
            n = (n << 8) | buf[off + 1]
            if k > 2:
                n = (n << 8) | buf[off + 2]
        if n < 0x80:
            raise _bad("non-minimal length")
        off += k
    if n > end - off:
        raise _bad("length beyond its container")
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
        raise _bad("empty INTEGER")
    b = buf[voff]
    if b & 0x80:
        raise _bad("negative INTEGER")
    if b == 0 and vend - voff > 1 and not buf[voff + 1] & 0x80:
        raise _bad("non-minimal INTEGER")


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
        raise _bad("span outside its buffer")
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
        raise _bad("certificate serial is not an INTEGER")
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
                raise _bad("nested too deep")
            level += 1
            ends[level] = e
            off = v
        else:
            off = e
