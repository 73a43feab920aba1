"""Transport tap: an io.IOBase stream between the TCP socket and ``tls``.

``tls.wrap_socket`` (axTLS on the ESP8266, mbedTLS on the unix port) accepts
any object whose class has ``io.IOBase`` as its FIRST base and implements
``readinto``/``write``/``ioctl``.  Everything the TLS library reads passes
through :meth:`Tap.readinto`, so the tap sees the TLS 1.2 records in transit:

    record    := type(1) version(2) length(2, big-endian) fragment[length]
    handshake := msg_type(1) length(3) body[length]    (may span records)
    Certificate (msg_type 11) body := certificate_list length(3)
                                      { cert length(3) DER }*

The tap follows the record layer with a few counters (no per-byte Python work
for record bodies it does not need), reassembles the peer's Certificate
message into one buffer sized by its header (bounded by _MAX_CERT_MSG), cuts
it into DER memoryviews and hands them to ``check(certs)`` -- the connection's
verifier -- while the TLS library has not yet seen the end of the peer's
flight: nothing has been keyed, nothing written with the session keys.

Fail closed: a record the tap does not understand (unknown type, version not
3.x, length beyond the TLS limit), a change-cipher-spec or application-data
record from the peer before its certificates were checked (TLS 1.3, session
resumption, anything that hides the certificate) or a verification failure
makes every later read return -ECONNABORTED, which the TLS library turns
into an OSError; ``err`` then says why (reason code, text).

Reading a ``-errno`` return from ``readinto`` is how MicroPython's io.IOBase
stream glue reports an error without raising through the C TLS code.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


import io

# TLS record content types (RFC 5246 6.2.1)
_CT_CCS = const(20)  # change_cipher_spec
_CT_ALERT = const(21)
_CT_HANDSHAKE = const(22)
_CT_APPDATA = const(23)
_HS_CERTIFICATE = const(11)  # HandshakeType certificate (RFC 5246 7.4)

_MAX_FRAGMENT = const(18432)  # 2^14 + 2048: TLSCiphertext limit (RFC 5246 6.2.3)
_MAX_CERT_MSG = const(8192)  # largest Certificate message the device takes in
_MAX_CERTS = const(6)  # certificates kept from one chain
_ECONNABORTED = const(103)  # errno returned (negated) once failed
_CBC_OVERHEAD = const(64)  # IV 16 + HMAC-SHA256 32 + padding 16: ciphertext beyond plaintext

# Reason codes (stable strings, like errors.EspError.reason) and their texts.
TLS13 = "tls13_or_resumed"
BAD_RECORD = "bad_record"
OVERSIZE = "oversize_record"
CERT_TOO_BIG = "cert_too_big"
BAD_CERT_MSG = "bad_certificate_message"
NO_CERT = "no_certificate"
TRUNCATED = "truncated_record"


class Tap(io.IOBase):
    """One connection's tap.  ``check``: None (pass everything, the SDK's
    behaviour with the CA check off) or a function(certs) raising EspError.
    ``limit``: largest application-data plaintext accepted in one record."""

    def __init__(self, sock, check, limit):
        self.sock = sock
        self.check = check
        self.limit = limit + _CBC_OVERHEAD  # compared with ciphertext lengths
        self.hdr = bytearray(5)  # record header being collected
        self.hn = 0  # header bytes so far
        self.ctype = 0  # type of the record whose body is passing
        self.left = 0  # body bytes of that record still to come
        self.hsh = bytearray(4)  # handshake message header being collected
        self.hshn = 0
        self.hsleft = 0  # handshake body bytes still to come
        self.cert = None  # Certificate message being reassembled
        self.certn = 0
        self.peer_ccs = False  # peer switched to encryption
        self.verified = check is None  # chain accepted (or no check asked)
        self.finished = False  # peer's Finished has passed: handshake over
        self.err = None  # (reason, text) once failed
        self.sock_err = 0  # errno the socket raised (ECONNRESET...), 0 if none
        self.shut = False  # ("closed" is a read-only property of CPython's io.IOBase)
        self.rx = 0  # bytes read from the socket, for statistics
        self.tx = 0

    # -- failure -------------------------------------------------------------
    def fail(self, reason, text):
        if self.err is None:
            self.err = (reason, text)
        self.cert = None
        return -_ECONNABORTED

    def mid_record(self):
        """True while a record (or its header) is only partly through."""
        return self.hn != 0 or self.left != 0

    # -- stream protocol ---------------------------------------------------------
    def readinto(self, buf):
        if self.err is not None:
            return -_ECONNABORTED
        try:
            n = self.sock.readinto(buf)
        except OSError as e:
            # ECONNRESET and friends: keep the errno for the connection layer.
            if self.mid_record() and self.err is None:
                self.err = (TRUNCATED, "connection reset inside a TLS record")
            code = e.args[0] if e.args else 5
            if not isinstance(code, int) or code <= 0:
                code = 5  # EIO
            self.sock_err = code
            return -code
        if not n:
            if n == 0 and self.mid_record() and self.err is None:
                self.err = (TRUNCATED, "peer closed inside a TLS record")
            return n  # None: would block (EAGAIN); 0: end of stream
        self.rx += n
        r = self._scan(buf, n)
        return n if r is None else r

    def write(self, buf):
        if self.err is not None:
            return -_ECONNABORTED
        try:
            n = self.sock.write(buf)
        except OSError as e:
            code = e.args[0] if e.args else 5
            return -code if isinstance(code, int) and code > 0 else -5
        if n:
            self.tx += n
        return n

    def ioctl(self, req, arg):
        if req == 4:  # MP_STREAM_CLOSE: the TLS library closes its stream
            self.close()
            return 0
        try:
            return self.sock.ioctl(req, arg)  # type: ignore[attr-defined]
        except AttributeError:
            return 0

    def close(self):
        if not self.shut:
            self.shut = True
            self.cert = None
            try:
                self.sock.close()
            except OSError:
                pass

    # -- record layer --------------------------------------------------------
    def _scan(self, buf, n):
        # Follow the records in buf[0:n]; None if all is well, else -errno.
        i = 0
        hdr = self.hdr
        while i < n:
            if self.left:
                take = self.left if self.left < n - i else n - i
                if self.ctype == _CT_HANDSHAKE and not self.peer_ccs:
                    r = self._handshake(buf, i, i + take)
                    if r is not None:
                        return r
                self.left -= take
                i += take
                if not self.left and self.ctype == _CT_HANDSHAKE and self.peer_ccs:
                    self.finished = True  # the encrypted Finished has passed
                continue
            # collect a header, possibly across reads
            take = 5 - self.hn
            if take > n - i:
                take = n - i
            hdr[self.hn : self.hn + take] = buf[i : i + take]
            self.hn += take
            i += take
            if self.hn < 5:
                break
            self.hn = 0
            ct = hdr[0]
            ln = hdr[3] << 8 | hdr[4]
            if hdr[1] != 3 or ln == 0 or ln > _MAX_FRAGMENT or ct < _CT_CCS or ct > _CT_APPDATA:
                return self.fail(BAD_RECORD, "not a TLS 1.x record (type %d, version %d.%d, length %d)" % (ct, hdr[1], hdr[2], ln))
            if ct == _CT_CCS or ct == _CT_APPDATA:
                if not self.verified:
                    return self.fail(TLS13, "peer went encrypted before its certificate was seen (TLS 1.3 or resumption)")
                if ct == _CT_CCS:
                    self.peer_ccs = True
                elif not self.finished:
                    return self.fail(BAD_RECORD, "application data before the handshake finished")
                elif ln > self.limit:
                    return self.fail(OVERSIZE, "record of %d bytes exceeds the buffer size %d" % (ln, self.limit - _CBC_OVERHEAD))
            self.ctype = ct
            self.left = ln
        return None

    # -- handshake layer (plaintext part of the peer's flight) ------------------
    def _handshake(self, buf, i, end):
        while i < end:
            if self.hsleft == 0 and self.cert is None:
                take = 4 - self.hshn
                if take > end - i:
                    take = end - i
                self.hsh[self.hshn : self.hshn + take] = buf[i : i + take]
                self.hshn += take
                i += take
                if self.hshn < 4:
                    return None
                self.hshn = 0
                h = self.hsh
                ln = h[1] << 16 | h[2] << 8 | h[3]
                if h[0] == _HS_CERTIFICATE and self.check is not None and not self.verified:
                    if ln > _MAX_CERT_MSG:
                        return self.fail(CERT_TOO_BIG, "certificate message of %d bytes (limit %d)" % (ln, _MAX_CERT_MSG))
                    if ln < 3:
                        return self.fail(NO_CERT, "peer sent no certificate")
                    try:
                        self.cert = bytearray(ln)
                    except MemoryError:
                        return self.fail("no_memory", "no heap for a %d-byte certificate message" % ln)
                    self.certn = 0
                self.hsleft = ln
                if ln == 0 and self.cert is None:
                    continue
            take = self.hsleft if self.hsleft < end - i else end - i
            cert = self.cert
            if cert is not None:
                cert[self.certn : self.certn + take] = memoryview(buf)[i : i + take]  # no temporary copy
                self.certn += take
            self.hsleft -= take
            i += take
            if self.hsleft == 0 and cert is not None:
                r = self._verify(cert)
                self.cert = None
                if r is not None:
                    return r
        return None

    def _verify(self, msg):
        # Certificate := certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>
        mv = memoryview(msg)
        total = len(msg)
        lst = msg[0] << 16 | msg[1] << 8 | msg[2]
        if lst != total - 3:
            return self.fail(BAD_CERT_MSG, "certificate list length %d in a %d-byte message" % (lst, total))
        certs = []  # type: list
        off = 3
        while off < total:
            if off + 3 > total or len(certs) >= _MAX_CERTS:
                return self.fail(BAD_CERT_MSG, "certificate list malformed or longer than %d" % _MAX_CERTS)
            ln = msg[off] << 16 | msg[off + 1] << 8 | msg[off + 2]
            off += 3
            if ln == 0 or off + ln > total:
                return self.fail(BAD_CERT_MSG, "certificate entry of %d bytes overruns the message" % ln)
            certs.append(mv[off : off + ln])
            off += ln
        if not certs:
            return self.fail(NO_CERT, "peer sent an empty certificate list")
        try:
            self.check(certs)  # type: ignore[misc]
        except MemoryError:
            return self.fail("no_memory", "out of heap while verifying the certificate chain")
        except Exception as e:
            reason = getattr(e, "reason", None)
            if reason is None:
                reason = "verify_failed"
            return self.fail(reason, str(e))
        self.verified = True
        return None
