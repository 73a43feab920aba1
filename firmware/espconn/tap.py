"""Transport tap: an io.IOBase stream between the TCP socket and ``tls``.

``tls.wrap_socket`` (axTLS on the ESP8266) takes any object whose class has
``io.IOBase`` as its FIRST base and implements ``readinto``/``write``/``ioctl``.
Every byte the TLS library reads passes through ``readinto``, so the tap sees
the TLS 1.2 records in transit and, in plaintext, the peer's handshake:

    record    := type(1) version(2) length(2, big-endian) fragment[length]
    handshake := msg_type(1) length(3) body[length]    (may span records)

It follows records with a few counters and acts on the peer's Certificate
message (msg_type 11) in one of three modes, chosen by the connection:
  pass    (CA check off, as on the SDK): let it through;
  capture (``capture``: espconn_secure_set_size): copy it whole into ``buf``
           (allocated at its header, as long as the message, refused beyond
           ``capture`` bytes) and stop the stream there: ``got`` is its
           length; the connection verifies it with the TLS library gone
           (see conn.py);
  match   (``want``): SHA-256 it as it passes and refuse the stream, before
           the TLS library sees its last byte, unless it is the one verified.
In pass and match mode the start of the message goes into ``buf`` (_PEEK
bytes, allocated at its header and dropped at its end): from the leaf's RSA
modulus the tap knows the heap axTLS's key exchange is about to take, and
refuses (``no_memory``) before axTLS could run out and crash the board.
Fail closed: once ``err`` is set (reason, text) every read returns
-ECONNABORTED.  A record the tap does not understand, one longer than axTLS
takes (5115 bytes), encrypted records from the peer before its certificate
was seen (TLS 1.3, resumption) in capture/match mode: all refused.  A socket
error is kept in ``sock_err`` (ECONNRESET -> ESPCONN_RST): whatever the TLS
layer later reports (axTLS turns every stream error into EOF), the
connection asks the tap first.

A ``-errno`` return from ``readinto`` is how MicroPython's stream glue lets
a Python stream report an error through the C TLS code.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


import gc
import io

_CT_CCS = const(20)  # TLS ContentType change_cipher_spec (RFC 5246 6.2.1)
_CT_HANDSHAKE = const(22)
_CT_APPDATA = const(23)
_HS_CERTIFICATE = const(11)  # HandshakeType certificate (RFC 5246 7.4)
_AXTLS_MAX = const(5115)  # RT_MAX_PLAIN_LENGTH 1024 + RT_EXTRA 4096 - 5: axTLS's record limit
_ECONNABORTED = const(103)  # errno returned (negated) once stopped
_CBC_OVERHEAD = const(64)  # IV 16 + HMAC-SHA256 32 + padding 16: ciphertext beyond plaintext
# Free heap axTLS needs once the peer's Certificate message has passed (it
# parses the chain, then the RSA key exchange), measured on real axTLS (32-bit,
# GC heap) as the smallest that did not crash: 18 B per byte of the leaf's RSA
# modulus (RSA-1024 2.3 KB, RSA-2048 4.6 KB, RSA-4096 9.2 KB; a second
# certificate in the chain adds no more), plus _KX_HEAP of margin.
_KX_HEAP = const(1280)
_KX_PER_BYTE = const(18)
# The bigints alive at its peak, in modulus lengths and in the order axTLS
# allocates them (RSA-2048: 256, 256, 260, 256, 260, 512, 260, 1024, 260, 520, 512)
_KX_PIECES = b"\x01\x01\x01\x01\x01\x02\x01\x04\x01\x02\x02"
_MAX_MODULUS = const(512)  # assumed when the leaf's RSA key cannot be found: RSA-4096
_PEEK = const(1024)  # start of the Certificate message kept to find the leaf's modulus
_STALE = const(256)  # heap a probe may leave unreturned before it counts as kept (hold)
# Text ids of its failures (espconn/texts.py)
_T_NOT_TLS = const(23)
_T_EARLY = const(24)
_T_EARLY_DATA = const(25)
_T_NO_CERT = const(26)
_T_CERT_BIG = const(27)
_T_CHANGED = const(28)
_T_CUT_RESET = const(29)
_T_CUT_CLOSE = const(30)
_T_AXTLS_MAX = const(32)
_T_RECORD = const(33)
_T_MEM_KX = const(41)
_T_MEM_CERT = const(42)
_T_MEM_KX_BLOCK = const(43)
_T_MEM_TAP = const(44)


def _take(sizes):
    # the probe's blocks, taken in order and dropped (collected by hold(), after this frame is gone)
    p = []  # type: list
    try:
        for n in sizes:
            p.append(bytearray(n))
    except MemoryError:
        return False
    finally:
        p = None  # type: ignore[assignment]  # noqa: F841
    return True


def hold(sizes, need=0):
    """True if ``need`` bytes are free and blocks of these byte sizes can be had
    together, taken in this order (the TLS library's at the point of the call):
    gc.mem_free() cannot tell how the free heap is cut, so they are taken, and
    dropped.

    A collection frees dropped blocks only if no stale pointer (a dead VM stack
    slot, or the C stack under a later call) still names one, and a probe kept
    that way took the very places the TLS library then needed: it crashed.  So
    what is not back after the probe is probed around once more: the blocks must
    fit beside the kept ones too."""
    gc.collect()
    f = gc.mem_free()
    if f < need:
        return False
    if not _take(sizes):
        return False
    gc.collect()
    if f - gc.mem_free() <= _STALE:
        return True
    ok = _take(sizes)  # (kept: then the blocks must fit again around them)
    gc.collect()
    return ok


def modulus(b, n):
    # Bytes of the leaf's RSA modulus, found after the rsaEncryption OID in b[:n]
    # (SubjectPublicKeyInfo: OID, NULL, BIT STRING { 0, SEQUENCE { INTEGER n, ... } }).
    i = b.find(b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01", 0, n)
    if i < 0:
        return _MAX_MODULUS
    i += 9
    try:
        if b[i] == 5:  # NULL parameters
            i += 2
        for tag in (3, 0x30, 2):
            if b[i] != tag:
                return _MAX_MODULUS
            ln = b[i + 1]
            i += 2
            if ln & 0x80:
                k = ln & 0x7F
                ln = 0
                for _ in range(k):
                    ln = ln << 8 | b[i]
                    i += 1
            if tag == 3:
                i += 1  # unused-bits byte
        return ln - 1 if b[i] == 0 else ln
    except IndexError:
        return _MAX_MODULUS


class Tap(io.IOBase):
    def __init__(self, sock, want, limit, capture, mod, extra):
        self.sock = sock
        self.mod = mod  # match mode: the leaf's modulus bytes, known from the capture
        self.extra = extra  # heap this side's own RSA key takes in the handshake (a client certificate)
        self.buf = None  # the Certificate body (capture), or its first _PEEK bytes
        self.capture = capture  # capture mode: the largest Certificate message taken (set_size)
        self.want = want  # match mode: SHA-256 the Certificate body must have
        self.limit = limit + _CBC_OVERHEAD  # largest application record (ciphertext)
        self.hdr = bytearray(9)  # [0:5] record header, [5:9] handshake header
        self.hn = 0  # record header bytes collected
        self.ctype = 0  # type of the record whose body is passing
        self.left = 0  # body bytes of that record still to come
        self.hshn = 0  # handshake header bytes collected
        self.hsleft = 0  # handshake body bytes still to come
        self.cert = 0  # the (first) Certificate message: 0 not yet, 1 passing, 2 passed
        self.certn = 0  # its bytes so far
        self.h = None  # match mode: running SHA-256
        self.seen = not capture and want is None  # certificate checked (or no check asked)
        self.ccs = False  # peer switched to encryption
        self.finished = False  # peer's Finished has passed: handshake over
        self.got = 0  # capture mode: Certificate body length, once whole
        self.err = None  # (text id, *numbers) once failed (espconn/texts.py)
        self.sock_err = 0  # errno the socket raised, 0 if none
        self.shut = False  # ("closed" is a read-only property of CPython's io.IOBase)

    def fail(self, err):
        if self.err is None:
            self.err = err
        self.h = None
        return -_ECONNABORTED

    def readinto(self, buf):
        if self.err is not None or self.got:
            return -_ECONNABORTED
        try:
            n = self.sock.readinto(buf)
        except OSError as e:
            code = e.args[0] if e.args else 5
            self.sock_err = code if isinstance(code, int) and code > 0 else 5
            if self.hn or self.left:
                self.fail((_T_CUT_RESET,))
            return -self.sock_err
        if not n:
            if n == 0 and (self.hn or self.left):
                self.fail((_T_CUT_CLOSE,))
            return n  # None: would block; 0: end of stream
        left = self.left
        if left:
            if left >= n and self.ccs:
                # fast path: inside an encrypted record body (nothing in it for the tap)
                left -= n
                self.left = left
                if not left and self.ctype == _CT_HANDSHAKE:
                    self.finished = True  # the encrypted Finished has passed
                return n
        elif n == 5 and self.finished and not self.hn and buf[0] == _CT_APPDATA and buf[1] == 3:
            # fast path: a whole application-data record header (axTLS reads one alone);
            # the checks _scan makes of it, done here (anything else goes to _scan)
            ln = buf[3] << 8 | buf[4]
            if 0 < ln <= self.limit and ln <= _AXTLS_MAX:
                self.ctype = _CT_APPDATA
                self.left = ln
                return 5
        try:  # nothing may raise through the TLS library's C code (axTLS would be left half-way)
            r = self._scan(buf, n)
        except MemoryError:
            r = self.fail((_T_MEM_TAP,))
        return n if r is None else r

    def write(self, buf):
        if self.err is not None:
            return -_ECONNABORTED
        try:
            return self.sock.write(buf)
        except OSError as e:
            code = e.args[0] if e.args else 5
            self.sock_err = code if isinstance(code, int) and code > 0 else 5
            return -self.sock_err

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
            self.buf = self.h = None
            try:
                self.sock.close()
            except OSError:
                pass

    def _scan(self, buf, n):
        # Follow the records in buf[0:n]; None if all is well, else -errno.
        i = 0
        hdr = self.hdr
        while i < n:
            if self.left:
                take = self.left if self.left < n - i else n - i
                if self.ctype == _CT_HANDSHAKE and not self.ccs:
                    r = self._handshake(buf, i, i + take)
                    if r is not None:
                        return r
                self.left -= take
                i += take
                if not self.left and self.ctype == _CT_HANDSHAKE and self.ccs:
                    self.finished = True  # the encrypted Finished has passed
                continue
            hdr[self.hn] = buf[i]
            self.hn += 1
            i += 1
            if self.hn < 5:
                continue
            self.hn = 0
            ct = hdr[0]
            ln = hdr[3] << 8 | hdr[4]
            if hdr[1] != 3 or ln == 0 or ct < _CT_CCS or ct > _CT_APPDATA:
                return self.fail((_T_NOT_TLS, ct, hdr[1], hdr[2]))
            if ln > _AXTLS_MAX:
                return self.fail((_T_AXTLS_MAX, ln))
            if ct != _CT_HANDSHAKE and ct != 21:
                if not self.seen:
                    return self.fail((_T_EARLY,))
                if ct == _CT_CCS:
                    self.ccs = True
                elif not self.finished:
                    return self.fail((_T_EARLY_DATA,))
                elif ln > self.limit:
                    return self.fail((_T_RECORD, ln))
            self.ctype = ct
            self.left = ln
        return None

    def _handshake(self, buf, i, end):
        # The plaintext handshake messages of the peer's flight, across records.
        hdr = self.hdr
        while i < end:
            if self.hsleft == 0:
                hdr[5 + self.hshn] = buf[i]
                self.hshn += 1
                i += 1
                if self.hshn < 4:
                    continue
                self.hshn = 0
                ln = hdr[6] << 16 | hdr[7] << 8 | hdr[8]
                self.hsleft = ln
                if hdr[5] == _HS_CERTIFICATE and not self.cert:
                    if ln < 4:
                        return self.fail((_T_NO_CERT,))
                    if self.capture and ln > self.capture:
                        return self.fail((_T_CERT_BIG, ln, self.capture, ln))
                    if not self.mod:
                        try:
                            # capture: as large as this chain, no larger; else its start
                            self.buf = bytearray(ln if self.capture or ln < _PEEK else _PEEK)
                        except MemoryError:
                            return self.fail((_T_MEM_CERT, ln))
                    if self.want is not None:
                        import hashlib

                        self.h = hashlib.sha256()
                    self.cert = 1
                    self.certn = 0
                continue
            take = self.hsleft if self.hsleft < end - i else end - i
            if self.cert == 1:
                part = memoryview(buf)[i : i + take]
                if self.h is not None:
                    self.h.update(part)
                k = len(self.buf) - self.certn if self.buf is not None else 0
                if k > 0:  # (all of it in capture mode; the leaf comes first)
                    self.buf[self.certn : self.certn + (take if take < k else k)] = part[:k]  # type: ignore[index]
                self.certn += take
            self.hsleft -= take
            i += take
            if self.hsleft == 0 and self.cert == 1:
                self.cert = 2
                if self.capture:
                    self.got = self.certn  # captured: the TLS library goes no further
                    return -_ECONNABORTED
                # axTLS parses the chain and does the RSA key exchange with the leaf's key
                # next: refused here if the heap cannot hold that (axTLS would crash the board)
                if self.h is not None:  # first: its context goes before the heap is probed
                    if self.h.digest() != self.want:
                        return self.fail((_T_CHANGED,))
                    self.h = None
                m = self.mod or modulus(self.buf, self.certn)
                need = _KX_HEAP + _KX_PER_BYTE * m + self.extra
                self.buf = None
                # (gc.mem_free() exists on MicroPython only: the tap also runs on CPython in tests)
                free = getattr(gc, "mem_free", None)
                if free is not None:
                    gc.collect()
                    f = free()
                    if f < need:
                        return self.fail((_T_MEM_KX, f, need))
                    # axTLS's bigints, in the sizes and order it takes them (a fragmented
                    # heap with enough free in all crashed here)
                    if not hold([k * m + 16 for k in _KX_PIECES]):
                        return self.fail((_T_MEM_KX_BLOCK, 4 * m + 16, f))
                self.seen = True
        return None
