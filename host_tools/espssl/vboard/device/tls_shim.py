# The ESP8266 port's `tls` module (axTLS build) for the virtual board.
# vboard_boot.py installs it as sys.modules["tls"]; the frozen `ssl` wrapper
# then builds on it, as it does on a board.  Underneath is the unix port's real
# `tls` (mbedTLS), cut down to what axTLS offers on an ESP8266:
#
# - Surface: SSLContext(PROTOCOL_TLS_CLIENT|PROTOCOL_TLS_SERVER) (protocol
#   ignored, as axTLS does), load_cert_chain(cert, key) with a DER certificate
#   and a PKCS#1 RSAPrivateKey DER key only (PEM, PKCS#8: ValueError "invalid
#   key"/"invalid cert" at wrap_socket time, as axTLS reports them),
#   wrap_socket(sock, *, server_side=, do_handshake_on_connect=,
#   server_hostname=), CERT_NONE.  verify_mode reads CERT_NONE and ignores
#   writes (axTLS's attr handler does exactly that; the frozen ssl module sets
#   it).  No load_verify_locations, getpeercert, do_handshake, set_ciphers.
# - Protocol: TLS 1.2 (the unix mbedTLS build has no TLS 1.3), RSA key exchange
#   with AES-CBC (the four suites axTLS has), never any certificate check.
# - Records: a tap (io.IOBase) between the socket and mbedTLS reads each
#   incoming record header; a record longer than 5115 bytes (axTLS's 5 KiB
#   shared buffer) prints what axTLS prints on the console ("TLS buffer
#   overflow, record size: N (+5)") and fails with OSError(-257,
#   "RECORD_OVERFLOW").  Outgoing plaintext is cut into 1024-byte records, as axTLS does.
# - The stream under it: when it fails (raises, or returns an error code as
#   an io.IOBase tap does) or ends, axTLS reports SSL_ERROR_CONN_LOST and
#   modtls_axtls.c makes that EOF: read/readinto return b""/0, write returns
#   0; a blocking handshake in wrap_socket raises OSError(-256, "CONN_LOST").
#   The reason is gone unless the stream kept it.  EAGAIN stays EAGAIN.
# - Errors: axTLS's OSError(code, name); an mbedTLS failure becomes
#   -260 INVALID_HANDSHAKE during the handshake and -256 after it (the mbedTLS
#   code is kept as the last argument).
# - RAM: axTLS takes ~8 KiB per connection from the GC heap and needs a
#   peak during the RSA key exchange, by key size and role (see _BITS).  Each
#   connection holds a ballast so that its total (mbedTLS's own GC allocations
#   included) matches, and the key exchange (seen in the records the tap
#   passes) allocates axTLS's peak for the key size.  (mbedTLS's own peak on
#   the 64-bit port is larger still: the shim cannot lower it.)  axTLS never checks an
#   allocation: when one fails the board crashes (an ESP8266 prints "Fatal
#   exception", its ROM the "rst cause" line, and MicroPython boots again).
#   So here too a MemoryError inside the TLS layer is not raised: the process
#   dies by SIGSEGV (a store to address 0, as axTLS's), which the board
#   supervisor prints as an ESP8266 crash and reboots from.  All memory is
#   released by close().

# Not reproduced (mbedTLS does them right, axTLS does not): the handshake also
# advances on writes, secure renegotiation is offered, full duplex works.
import io as _io

import tls as _tls
import uctypes as _uctypes
from micropython import const as _const

PROTOCOL_TLS_CLIENT = _const(0)
PROTOCOL_TLS_SERVER = _const(1)
CERT_NONE = _const(0)

_MAX_RECORD = _const(5115)  # axTLS: RT_MAX_PLAIN_LENGTH buffer of 5 KiB less the header
_OUT_RECORD = _const(1024)  # axTLS cuts outgoing plaintext into records this long
# Calibrated on real axTLS (a 32-bit unix port built as the ESP8266 builds
# it, axTLS on the GC heap), 64-byte echo, RSA-1024/2048/4096 keys (bytes):
#   client (the server's key):  free needed at wrap 10832/12816/16848, held
#                               once connected 8272/8528/9040
#   server (its own key):       free needed at wrap 10480/13616/17968, held
#                               once connected 9072/10992/15856
# A client holds 8272 from wrap_socket and the rest once the key exchange
# (where the peak is) shows the key size; a server knows its key at wrap.
# Between and beyond the three sizes: linear.
_BITS = (1024, 2048, 4096)
_CLIENT_NEED = (10832, 12816, 16848)
_CLIENT_HELD = (8272, 8528, 9040)
_SERVER_NEED = (10480, 13616, 17968)
_SERVER_HELD = (9072, 10992, 15856)
# The bigints of axTLS's RSA operation in modulus lengths, in the order it
# allocates them, alive at its peak (RSA-2048: 256, 256, 260, ..., 1024, 260, 520, 512).
_KX_PIECES = b"\x01\x01\x01\x01\x01\x02\x01\x04\x01\x02\x02"
_AXTLS_CONN = _const(8272)  # what a connection holds from wrap_socket on (client)
_MBEDTLS_GC = _const(4192)  # what the unix port's SSLSocket takes from the GC heap itself
_EIO = _const(5)
_EAGAIN = _const(11)
_EINVAL = _const(22)
_MP_STREAM_CLOSE = _const(4)  # py/stream.h ioctl requests
_MP_STREAM_POLL = _const(3)
_MP_STREAM_POLL_ERR = _const(8)
_MP_STREAM_POLL_HUP = _const(16)

# axTLS error codes (ssl.h) with the names MicroPython's modtls_axtls.c gives them.
_SSL_ERROR_CONN_LOST = _const(-256)
_SSL_ERROR_RECORD_OVERFLOW = _const(-257)
_SSL_ERROR_INVALID_HANDSHAKE = _const(-260)

# The cipher suites axTLS 2.1 offers, by mbedTLS's names.
_CIPHERS = (
    "TLS-RSA-WITH-AES-128-CBC-SHA",
    "TLS-RSA-WITH-AES-256-CBC-SHA",
    "TLS-RSA-WITH-AES-128-CBC-SHA256",
    "TLS-RSA-WITH-AES-256-CBC-SHA256",
)


def _der_seq(buf, off):
    # -> (value offset, value end) of a DER SEQUENCE/INTEGER at off, or (-1, -1)
    n = len(buf)
    if off + 2 > n:
        return -1, -1
    ln = buf[off + 1]
    off += 2
    if ln & 0x80:
        k = ln & 0x7F
        if k == 0 or k > 3 or off + k > n:
            return -1, -1
        ln = 0
        for i in range(k):
            ln = ln << 8 | buf[off + i]
        off += k
    if off + ln > n:
        return -1, -1
    return off, off + ln


def _is_pkcs1_key(key):
    # RSAPrivateKey ::= SEQUENCE { version INTEGER (0), modulus INTEGER, ... }
    # (PKCS#8 has a SEQUENCE where the modulus is; PEM starts with "-----").
    if len(key) < 8 or key[0] != 0x30:
        return False
    off, end = _der_seq(key, 0)
    if off < 0 or end != len(key) or key[off] != 0x02:
        return False
    voff, vend = _der_seq(key, off)
    if voff < 0 or vend - voff != 1 or key[voff] != 0:
        return False
    return vend < end and key[vend] == 0x02


def _is_der_cert(cert):
    if len(cert) < 8 or cert[0] != 0x30:
        return False
    off, end = _der_seq(cert, 0)
    return off >= 0 and end == len(cert) and cert[off] == 0x30


def _error(code, name, *extra):
    return OSError(code, name, *extra)


def _by_bits(bits, table):
    # TABLE's figure for an RSA key of BITS, linear between (and beyond) _BITS.
    i = 0 if bits < _BITS[1] else 1
    x0, x1, y0, y1 = _BITS[i], _BITS[i + 1], table[i], table[i + 1]
    return max(0, y0 + (y1 - y0) * (bits - x0) // (x1 - x0))


def _key_bits(key):
    # The modulus size of a PKCS#1 RSAPrivateKey DER (checked by _is_pkcs1_key).
    off, end = _der_seq(key, 0)
    voff, vend = _der_seq(key, off)  # version
    moff, mend = _der_seq(key, vend)  # modulus
    n = mend - moff
    if n and key[moff] == 0:
        n -= 1
    return n * 8


def _crash():
    # axTLS dereferences the NULL its unchecked calloc returned: the board dies.
    _uctypes.bytearray_at(0, 4)[0] = 0


class _Tap(_io.IOBase):
    # Sits between the socket (or the caller's stream) and mbedTLS: counts
    # incoming record headers, forwards everything else untouched.
    def __init__(self, sock):
        self.sock = sock
        self.hdr = bytearray(5)  # the record header being collected
        self.hn = 0  # header bytes collected so far
        self.left = 0  # body bytes of the current record still to come
        self.overflow = 0  # length of the oversize record seen, or 0
        self.lost = None  # what the stream did (its exception, error code or "eof"): CONN_LOST
        self.body = False  # the next record byte starts a handshake record's body
        self.key = None  # what axTLS keeps of the peer's key after the key exchange
        self.server_bits = 0  # server role: the size of its own RSA key
        self.poller = None  # select.poll over a real socket, made on first poll

    def readinto(self, buf):
        if self.overflow or self.lost:
            return -_EIO
        try:
            n = self.sock.readinto(buf)
        except OSError as e:
            if e.args and e.args[0] == _EAGAIN:
                return None
            self.lost = e
            return -_EIO
        if n is None:
            return None  # would block
        if n <= 0:
            if n == -_EAGAIN:
                return None
            self.lost = n or "eof"  # the stream's error code, or its end
            return n if n else 0
        i = 0
        hdr = self.hdr
        while i < n:
            if self.left:
                if self.body:  # server role: the client's ClientKeyExchange arrives
                    self.body = False
                    if buf[i] == 0x10 and i + 5 < n:
                        self.key_exchange(buf[i + 4] << 8 | buf[i + 5])
                take = min(self.left, n - i)
                self.left -= take
                i += take
                continue
            hdr[self.hn] = buf[i]
            self.hn += 1
            i += 1
            if self.hn == 5:
                self.hn = 0
                self.left = hdr[3] << 8 | hdr[4]
                self.body = hdr[0] == 0x16 and self.key is None
                if self.left > _MAX_RECORD:
                    self.overflow = self.left
                    print("TLS buffer overflow, record size: %d (+5)" % self.left)
                    return -_EIO
        return n

    def key_exchange(self, n):
        # RSA key exchange with an N-byte modulus: axTLS's bigint work (the
        # peak), then what it keeps; an allocation that fails is a crash.
        bits = n * 8
        if self.server_bits:
            need, held = _by_bits(self.server_bits, _SERVER_NEED), _by_bits(self.server_bits, _SERVER_HELD)
            base = held
        else:
            need, held = _by_bits(bits, _CLIENT_NEED), _by_bits(bits, _CLIENT_HELD)
            base = _AXTLS_CONN
        # axTLS's peak is many bigints, not one block: allocated in their sizes
        # and order (as measured: espconn's tap probes the same) until it is reached
        m = (self.server_bits or bits) // (16 if self.server_bits else 8)  # a server's CRT halves
        left = max(need - base, 16)
        try:
            peak = []
            i = 0
            while left > 0:
                k = _KX_PIECES[i % len(_KX_PIECES)] * m + 16
                peak.append(bytearray(k))
                left -= k
                i += 1
            peak = None
            self.key = bytearray(max(held - base, 0))
        except MemoryError:
            _crash()

    def write(self, buf):
        if self.lost:
            return -_EIO
        if self.key is None and len(buf) > 10 and buf[0] == 0x16 and buf[5] == 0x10:
            self.key_exchange(buf[9] << 8 | buf[10])  # client role: its ClientKeyExchange goes out
        try:
            n = self.sock.write(buf)
        except OSError as e:
            if e.args and e.args[0] == _EAGAIN:
                return None
            self.lost = e
            return -_EIO
        if n is not None and n < 0 and n != -_EAGAIN:
            self.lost = n
        return n

    def ioctl(self, req, arg):
        sock = self.sock
        if isinstance(sock, _io.IOBase):
            return sock.ioctl(req, arg)  # a caller's stream (a tap of its own)
        # A real socket has its ioctl in C only: emulate the two requests
        # mbedTLS and select.poll make.
        if req == _MP_STREAM_CLOSE:
            sock.close()
            return 0
        if req == _MP_STREAM_POLL:
            import select

            if self.poller is None:
                self.poller = select.poll()
                self.poller.register(sock, 0xFFFF)
            ready = 0
            for ev in self.poller.poll(0):
                ready |= ev[1]
            return ready & (arg | _MP_STREAM_POLL_ERR | _MP_STREAM_POLL_HUP)
        return -_EINVAL

    def setblocking(self, flag):
        return self.sock.setblocking(flag)


class SSLSocket(_io.IOBase):
    # What wrap_socket returns: a stream (read/readinto/readline/write/
    # setblocking/close, and ioctl so select.poll works on it).
    def __init__(self, ctx, sock, server_side, do_handshake_on_connect, server_hostname, key_bits=0):
        self._tap = _Tap(sock)
        self._s = None
        self._closed = False
        blocking = do_handshake_on_connect and not server_side
        held = _AXTLS_CONN
        if server_side and key_bits:
            self._tap.server_bits = key_bits
            held = _by_bits(key_bits, _SERVER_HELD)
        try:
            self._ballast = bytearray(max(held - _MBEDTLS_GC, 16))
            self._hs = True  # the handshake is not over
            self._s = ctx.wrap_socket(
                self._tap,
                server_side=server_side,
                do_handshake_on_connect=blocking,
                server_hostname=server_hostname,
            )
        except MemoryError:
            _crash()
        except OSError as e:
            err = self._map(e)
            self._release()
            if err is None:  # the stream failed or ended: ssl_handshake_status() says CONN_LOST
                err = _error(_SSL_ERROR_CONN_LOST, "CONN_LOST")
            raise err
        if blocking:
            self._hs = None

    def _release(self):
        self._ballast = None
        self._tap.key = None
        self._hs = None

    def _map(self, e):
        # The OSError axTLS would give for mbedTLS's E, or None where axTLS gives EOF.
        if self._tap.overflow:
            return _error(_SSL_ERROR_RECORD_OVERFLOW, "RECORD_OVERFLOW")
        if self._tap.lost is not None:
            return None
        code = e.args[0] if e.args else 0
        if isinstance(code, int) and code < -256 and code != _SSL_ERROR_CONN_LOST:
            if self._hs is not None:
                return _error(_SSL_ERROR_INVALID_HANDSHAKE, "INVALID_HANDSHAKE", code)
            return _error(_SSL_ERROR_CONN_LOST, "CONN_LOST", code)
        return e

    def _call(self, fn, *args):
        # fn(*args) on the mbedTLS socket with axTLS's outcomes: EOF (None) for a
        # lost stream, axTLS's OSError, a crash for an allocation that failed.
        if self._s is None:
            raise OSError(9)  # EBADF
        if self._tap.lost is not None and self._tap.overflow == 0:
            return None
        try:
            return fn(*args)
        except MemoryError:
            _crash()
        except OSError as e:
            err = self._map(e)
            if err is None:
                return None
            raise err

    def readinto(self, buf, nbytes=None):
        s = self._s
        n = self._call(s.readinto, buf) if nbytes is None else self._call(s.readinto, buf, nbytes)
        if n is None and self._tap.lost is not None:
            return 0
        if n:
            self._hs = None
        return n

    def read(self, n=-1):
        if n < 0:
            data = self._call(self._s.read)
        else:
            # The result buffer is MicroPython's, not axTLS's: out of heap
            # there is a MemoryError as on a board, not a crash.
            buf = bytearray(n)
            got = self._call(self._s.readinto, buf)
            data = None if got is None else bytes(memoryview(buf)[:got])
        if data is None and self._tap.lost is not None:
            return b""
        if data:
            self._hs = None
        return data

    def readline(self):
        data = self._call(self._s.readline)
        if data is None and self._tap.lost is not None:
            return b""
        return data

    def write(self, buf):
        if self._s is None:
            raise OSError(9)
        mv = memoryview(buf)
        done = 0
        while done < len(mv):
            try:
                n = self._call(self._s.write, mv[done : done + _OUT_RECORD])
            except OSError:
                if done:
                    return done
                raise
            if not n:
                if self._tap.lost is not None:
                    return done  # axTLS: CONN_LOST -> 0, "EOF"
                break
            done += n
            self._hs = None
        if done == 0 and len(mv):
            return None  # non-blocking, nothing sent yet
        return done

    def setblocking(self, flag):
        if self._s is not None:
            self._s.setblocking(flag)
        else:
            self._tap.setblocking(flag)

    def ioctl(self, req, arg):
        if req == _MP_STREAM_CLOSE:
            self.close()
            return 0
        return self._tap.ioctl(req, arg)

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._release()
        s = self._s
        self._s = None
        if s is not None:
            s.close()  # closes the tap, which closes the socket
        else:
            self._tap.sock.close()


class SSLContext:
    def __init__(self, protocol):
        # axTLS ignores the protocol: wrap_socket's server_side picks the role.
        self._key = None
        self._cert = None

    @property
    def verify_mode(self):
        return CERT_NONE

    @verify_mode.setter
    def verify_mode(self, value):
        pass  # axTLS: CERT_NONE is the only mode, a store is ignored

    def load_cert_chain(self, cert, key):
        """Certificate (DER) and private key (PKCS#1 DER); checked at wrap_socket."""
        self._cert = cert
        self._key = key

    def wrap_socket(self, sock, *, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        """Wrap a connected socket (or an io.IOBase stream) in TLS 1.2."""
        if not isinstance(sock, _io.IOBase) and not hasattr(sock, "setsockopt"):
            # On an ESP8266 a non-stream object here crashes the board.
            raise TypeError("stream object required")
        try:
            return self._wrap(sock, server_side, do_handshake_on_connect, server_hostname)
        except MemoryError:
            _crash()  # axTLS's ssl_ctx_new/ssl_client_new got NULL

    def _wrap(self, sock, server_side, do_handshake_on_connect, server_hostname):
        ctx = _tls.SSLContext(_tls.PROTOCOL_TLS_SERVER if server_side else _tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = _tls.CERT_NONE
        ctx.set_ciphers(_CIPHERS)
        if self._key is not None:
            key, cert = self._key, self._cert
            if not isinstance(key, (bytes, bytearray)) or not _is_pkcs1_key(key):
                raise ValueError("invalid key")
            if not isinstance(cert, (bytes, bytearray)) or not _is_der_cert(cert):
                raise ValueError("invalid cert")
            try:
                ctx.load_cert_chain(cert, key)
            except (ValueError, OSError):
                raise ValueError("invalid key")
        bits = _key_bits(self._key) if self._key is not None else 0
        return SSLSocket(ctx, sock, server_side, do_handshake_on_connect, server_hostname, bits)
