"""RSA PKCS#1 v1.5 signature verification (RFC 8017 section 8.2.2), SHA-1 and SHA-256.

Plain functions, no state.  The ESP8266 port has no three-argument ``pow()``,
so the modular exponentiation is written out as left-to-right
square-and-multiply over Python ints (MicroPython's mpz).  With the usual
public exponent 65537 that is 17 squarings and one multiplication, each
followed by one reduction: the largest temporary is a product of two
modulus-sized numbers (512 bytes for RSA-2048).

The encoded message is checked byte for byte, never parsed:

    EM = 00 01 FF..FF 00 || DigestInfo(hash OID, NULL params) || digest

with at least 8 bytes of FF padding and the DigestInfo prefix exactly the DER
that RFC 8017 (section 9.2, note 1) lists; the variant without the NULL
parameters, BER length forms, trailing garbage and short padding are all
rejected as ``bad_signature``.  Key limits (``weak_key`` /
``unsupported_algorithm``) keep the work per signature bounded.
"""

try:
    from micropython import const

    _MP = True  # on MicroPython: collect garbage before the big-number burst
except ImportError:  # CPython
    _MP = False

    def const(x):  # type: ignore[misc]
        return x


from .errors import VerifyError

# Hash identifiers used by x509.py and the tests.
SHA1 = const(1)
SHA256 = const(2)

# RFC 8017 9.2 note 1: DER of DigestInfo up to (and including) the OCTET STRING
# header, for each hash.  Constant bytes: frozen, they stay in flash.
_PREFIX_SHA1 = b"\x30\x21\x30\x09\x06\x05\x2b\x0e\x03\x02\x1a\x05\x00\x04\x14"
_PREFIX_SHA256 = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"

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
    if hash_id == SHA1:
        prefix = _PREFIX_SHA1
        hlen = 20
    elif hash_id == SHA256:
        prefix = _PREFIX_SHA256
        hlen = 32
    else:
        raise VerifyError("unsupported_algorithm", "hash")
    if len(digest) != hlen:
        raise VerifyError("bad_signature", "RSA signature")
    # k: modulus length in bytes, without a DER sign byte.
    k = (bits(n) + 7) // 8
    if len(sig) != k:
        raise VerifyError("bad_signature", "RSA signature")
    tlen = len(prefix) + hlen
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
    ok = ok and em[sep] == 0
    j = 0
    plen = len(prefix)
    while j < plen:
        ok = ok and em[sep + 1 + j] == prefix[j]
        j += 1
    base = sep + 1 + plen
    j = 0
    while j < hlen:
        ok = ok and em[base + j] == digest[j]
        j += 1
    if not ok:
        raise VerifyError("bad_signature", "RSA signature")
