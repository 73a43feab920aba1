"""Host name and IP address matching for certificate checks.

    parse_ip(text) -> bytes or None
    match_dns(pattern, host) -> bool

``parse_ip`` is strict, because a string that is not clearly an address must
not be checked as one (nor, by ``match_dns``, as a DNS name):
  - IPv4: exactly four dot-separated decimal numbers 0..255, one to three
    digits each, no leading zeros ("01.2.3.4" is refused: inet_aton reads it as
    octal, other parsers as decimal), no shorthand ("1.2.3", "1.2.0x3.4"), no
    trailing dot, no spaces or signs.
  - IPv6 (RFC 4291 2.2): eight groups of 1..4 hex digits, one "::" standing
    for at least one zero group, optionally ending in a dotted IPv4 address
    (parsed as above) in the last 32 bits.  No brackets, no zone ("%eth0"),
    no prefix length.
  -> 4 or 16 bytes in network order; anything else -> None.

``match_dns`` follows RFC 6125 section 6.4: a pattern (a subjectAltName
dNSName or, for legacy certificates, a CN) matches a host name when they are
equal ignoring ASCII case and one trailing dot.  A "*" is allowed only as the
whole left-most label and stands for exactly one non-empty label; it needs at
least two labels after it ("*.com", "*" never match), partial-label wildcards
("f*.example.com", "*x.example.com") never match, and neither does any
pattern for a host that is an IP address (addresses are checked against
iPAddress entries by the verifier, byte for byte).  A name whose right-most
label starts with a digit ("1.2.3", "01.2.3.4": forms inet_aton reads as
addresses) is not a host name and matches nothing.  Names must be ASCII
(IDNs as A-labels), labels 1..63 bytes of letters, digits, "-" and "_", the
whole name at most 253 bytes; anything else does not match.  There is no
public-suffix list: "*.co.uk" matches "x.co.uk".
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


_MAX_NAME = const(253)  # RFC 1035 2.3.4, without the trailing dot
_MAX_LABEL = const(63)


def _dec(part):
    # "0".."255", 1..3 digits, no leading zero -> int, else -1
    n = len(part)
    if n == 0 or n > 3 or (n > 1 and part[0] == "0"):
        return -1
    v = 0
    for ch in part:
        if ch < "0" or ch > "9":
            return -1
        v = v * 10 + ord(ch) - 48
    return v if v <= 255 else -1


def _ipv4(text, out, pos):
    # Dotted quad into out[pos:pos + 4]; False if not one.
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for i in range(4):
        v = _dec(parts[i])
        if v < 0:
            return False
        out[pos + i] = v
    return True


def _hex(group):
    # 1..4 hex digits -> int, else -1
    n = len(group)
    if n == 0 or n > 4:
        return -1
    v = 0
    for ch in group:
        o = ord(ch)
        if 48 <= o <= 57:
            d = o - 48
        elif 97 <= o <= 102:
            d = o - 87
        elif 65 <= o <= 70:
            d = o - 55
        else:
            return -1
        v = (v << 4) | d
    return v


def _groups(text, out, pos, limit, v4):
    # Colon-separated hex groups of ``text`` written at out[pos:]; the last
    # one may be a dotted IPv4 address (two groups' worth) when ``v4`` (the
    # text ends the address).  At most ``limit`` groups.  Returns the number
    # of 16-bit groups written, -1 if malformed.
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
        v = _hex(p)
        if v < 0 or n >= limit:
            return -1
        out[pos + 2 * n] = v >> 8
        out[pos + 2 * n + 1] = v & 0xFF
        n += 1
    return n


def _ipv6(text):
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
    if "::" in tail or (tail[:1] == ":") or (head[-1:] == ":") or (head[:1] == ":"):
        return None
    if tail[-1:] == ":":
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


def parse_ip(text):
    """Strict IPv4 (dotted quad) or IPv6 text -> 4 or 16 bytes; else None."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except Exception:
            return None
    if not isinstance(text, str) or not text:
        return None
    if ":" in text:
        return _ipv6(text)
    if len(text) > 15:
        return None
    out = bytearray(4)
    return bytes(out) if _ipv4(text, out, 0) else None


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
