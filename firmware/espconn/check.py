"""The peer check of a client connection, loaded only for it (conn.verify).

It runs between two TCP connections, with no TLS library in the heap (see
conn.py): the Certificate message captured by the tap is cut into its DER
certificates and checked against the pin and the CA store.  Raises EspError
(reason, text) on any failure; returns the message's SHA-256, which the tap
of the next connection requires, and until when (time.time()) conn may
accept that message again without a check (conn.peers).
"""

_MAX_CERTS = 6  # certificates taken from one chain
_MAX_AGE = 3600  # seconds a check is remembered (conn.peers), at most: see run()


def chain(msg):
    """Certificate := certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1> -> [memoryview]."""
    from .errors import VerifyError

    total = len(msg)
    if total < 3 or (msg[0] << 16 | msg[1] << 8 | msg[2]) != total - 3:
        raise VerifyError("bad_certificate_message", "certificate list length does not match its %d-byte message" % total)
    certs = []  # type: list
    off = 3
    while off < total:
        if off + 3 > total or len(certs) >= _MAX_CERTS:
            raise VerifyError("bad_certificate_message", "certificate list malformed or longer than %d" % _MAX_CERTS)
        ln = msg[off] << 16 | msg[off + 1] << 8 | msg[off + 2]
        off += 3
        if ln == 0 or off + ln > total:
            raise VerifyError("bad_certificate_message", "certificate entry of %d bytes overruns the message" % ln)
        certs.append(msg[off : off + ln])
        off += ln
    if not certs:
        raise VerifyError("no_certificate", "peer sent an empty certificate list")
    return certs


def not_after(cert):
    """notAfter of a DER certificate x509.verify_chain accepted (unix seconds)."""
    from .x509 import _time, read

    t, p, e = read(cert, 0, len(cert))  # Certificate
    t, p, e = read(cert, p, e)  # tbsCertificate: [0] version, serial, signature, issuer, validity
    t, v, p = read(cert, p, e)
    if t == 0xA0:
        t, v, p = read(cert, p, e)
    t, v, p = read(cert, p, e)
    t, v, p = read(cert, p, e)
    t, v, p = read(cert, p, e)
    return _time(cert, _time(cert, v, p)[1], p)[0]


def run(msg, sector, pin, name, verified=None):
    """Check the captured Certificate body ``msg`` (memoryview): (its SHA-256, expiry).

    ``verified``: the caller's resident list of anchors whose own signature
    has been checked (castore.open), so that RSA check runs once per boot.

    ``expiry`` (time.time() of this clock) bounds how long the result may be
    reused for the same peer: _MAX_AGE from now (what the check does not see
    again: the chain's other certificates' dates, the store's contents), and
    with the CA check no later than the leaf's notAfter.  A clock set (or set
    back) in between ends it too (conn compares against the time it was made)."""
    import hashlib
    import time

    certs = chain(msg)
    if pin is not None:
        from .x509 import cert_sha256, spki_sha256

        if cert_sha256(certs[0]) != pin and spki_sha256(certs[0]) != pin:
            from .errors import VerifyError

            raise VerifyError("pin_mismatch", "the certificate matches neither pinned SHA-256 (certificate or public key)")
    now = int(time.time())
    end = now + _MAX_AGE
    if sector >= 0:
        import gc
        import sys

        from . import castore  # type: ignore[attr-defined]
        from .x509 import unix_time, verify_chain

        gc.collect()  # what loading the modules left: a whole heap for the store's scan
        anchors = castore.open(sector).issuers_of(certs)  # (its first use checks the whole store)
        # The store's code goes before the RSA work, the peak of a check (conn.drop_verifier
        # drops the rest after it): 2 KB less heap needed from /lib on a 32-bit build.
        del castore
        pkg = __name__[: __name__.rfind(".")]
        sys.modules.pop(pkg + ".castore", None)
        if "castore" in sys.modules[pkg].__dict__:
            delattr(sys.modules[pkg], "castore")
        gc.collect()
        verify_chain(certs, anchors, name=name, verified=verified)
        t = not_after(certs[0]) - (unix_time(now) - now)  # on this clock (no second read: it may tick)
        if t < end:
            end = t
    return hashlib.sha256(msg).digest(), end
