"""The peer check of a client connection, loaded only for it (conn.verify).

It runs between two TCP connections, with no TLS library in the heap (see
conn.py): the Certificate message captured by the tap is cut into its DER
certificates and checked against the pin and the CA store.  Raises EspError
(reason, text) on any failure; returns the message's SHA-256, which the tap
of the next connection requires.
"""

_MAX_CERTS = 6  # certificates taken from one chain


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


def run(msg, sector, pin, name, verified=None):
    """Check the captured Certificate body ``msg`` (memoryview); its SHA-256.

    ``verified``: the caller's resident list of anchors whose own signature
    has been checked (castore.open), so that RSA check runs once per boot."""
    import hashlib

    certs = chain(msg)
    if pin is not None:
        from .x509 import cert_sha256, spki_sha256

        if cert_sha256(certs[0]) != pin and spki_sha256(certs[0]) != pin:
            from .errors import VerifyError

            raise VerifyError("pin_mismatch", "the certificate matches neither pinned SHA-256 (certificate or public key)")
    if sector >= 0:
        from . import castore  # type: ignore[attr-defined]
        from .x509 import verify_chain

        verify_chain(certs, castore.open(sector, verified=verified), name=name)
    return hashlib.sha256(msg).digest()
