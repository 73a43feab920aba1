"""One secure connection (and the one secure server): state, buffers, SDK rules.

The SDK-named layer (espconn/__init__.py) checks arguments and calls in here;
everything that happens later (TCP connect, handshake, certificate check,
reads, writes, callbacks) happens in ``step()``, called by espconn.dispatch.

Order of work in one step of an open connection, which is what keeps axTLS
happy (DESIGN.md section 2):
  1. read: the handshake advances only on reads; after it, decrypted data is
     read until the TLS layer says "would block" (its shared buffer is then
     empty: half-duplex) and handed to recvcb in pieces of at most _RX bytes;
  2. write: only once the handshake is over and the chain was accepted, only
     with nothing left unread, at most _OUT (1024) bytes per write.
The peer's certificates are checked by the tap (espconn.tap) in the middle of
the handshake, before the TLS library keys anything; connectcb fires only when
the peer's Finished has passed, so no application byte moves before that.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


import gc
import sys

from . import dispatch
from .tap import Tap
# The SDK's codes (espconn.codes), inlined here as underscored consts: no globals.
_ESPCONN_ABRT = const(-8)
_ESPCONN_ARG = const(-12)
_ESPCONN_CLOSE = const(6)
_ESPCONN_CONN = const(-11)
_ESPCONN_CONNECT = const(3)
_ESPCONN_HANDSHAKE = const(-28)
_ESPCONN_INPROGRESS = const(-5)
_ESPCONN_ISCONN = const(-15)
_ESPCONN_MEM = const(-1)
_ESPCONN_NONE = const(0)
_ESPCONN_OK = const(0)
_ESPCONN_READ = const(5)
_ESPCONN_RST = const(-9)
_ESPCONN_RTE = const(-4)
_ESPCONN_SSL_INVALID_DATA = const(-61)
_ESPCONN_TCP = const(16)
_ESPCONN_TIMEOUT = const(-3)
_ESPCONN_WAIT = const(1)
_ESPCONN_WRITE = const(4)

_OUT = const(1024)  # axTLS cuts plaintext into 1024-byte records: write no more at once
_RX = const(1024)  # decrypted bytes handed to recvcb per call
_READS_PER_STEP = const(8)  # bound on reads in one step (fairness between connections)
_TLS_HEAP = const(13824)  # TLS beyond our buffers: axTLS ~8 KiB + its ~5.4 KiB handshake block
_CONNECT_MS = const(10000)  # TCP connect timeout (lwIP's SYN retries take about as long)

# errno values (same on lwIP and Linux for these)
_EAGAIN = const(11)
_EINPROGRESS = const(115)
_ECONNRESET = const(104)
_ECONNREFUSED = const(111)
_ETIMEDOUT = const(110)
_ENETUNREACH = const(101)
_EHOSTUNREACH = const(113)

# Settings, per level (index 1 = client, 2 = server), as the SDK keeps them.
ca_sector = [-1, -1, -1]  # CA store sector for the check, -1: no check
cert_sector = [-1, -1, -1]  # esp_cert_private_key.bin sector, -1: none
size = [2048, 2048, 2048]  # SSL buffer size (espconn_secure_set_size)
default_cert = None  # espconn_secure_set_default_certificate(): server certificate DER
default_key = None  # espconn_secure_set_private_key(): server key, PKCS#1 DER
client = None  # type: object  # the one client Conn, or None
server = None  # type: object  # the one Listener, or None
_port = 49152  # espconn_port(): next local port handed out


def _mem_free():
    f = getattr(gc, "mem_free", None)  # MicroPython only
    return f() if f is not None else 1 << 30


def busy(level):
    """True when settings of ``level`` may no longer change."""
    if level & 1 and client is not None:
        return True
    if level & 2 and server is not None:
        return True
    return False


def set_error(esp, reason, text, code=0):
    esp._err = (reason, text)
    esp._errcode = code


def _ip_text(ip):
    return "%d.%d.%d.%d" % (ip[0], ip[1], ip[2], ip[3])


def _fire(esp, name, cb, *args):
    esp._events += 1
    esp._last = name
    dispatch.events += 1
    dispatch.last = name
    if cb is None:
        return
    try:
        cb(*args)
    except Exception as e:  # a user callback must not stop the engine, as in the SDK
        pe = getattr(sys, "print_exception", None)
        if pe is not None:
            pe(e)
        else:
            print("espconn: callback", name, "raised", repr(e))


def _errno(e):
    code = e.args[0] if e.args else 0
    return code if isinstance(code, int) else 0


class Conn:
    """One TLS connection: a client, or the client a server accepted."""

    def __init__(self, esp, listener=None):
        self.esp = esp
        self.listener = listener  # the Listener for a server-side connection
        self.level = 2 if listener is not None else 1
        self.sock = None
        self.tls = None
        self.tap = None
        self.poller = None  # used while the TCP connect is in progress
        self.t0 = 0
        self.up = False  # handshake over, connectcb fired
        self.more = False  # the last read returned data: more may be buffered in TLS
        self.rx = None
        self.rxmv = None
        self.tx = None
        self.txmv = None
        self.txlen = 0
        self.txoff = 0
        self.heap = 0  # bytes of heap this connection holds (measured when up)
        self.m0 = 0
        self.closed = False
        self.pending = None  # (name, code) of a callback still to fire after close

    # -- set-up ------------------------------------------------------------
    def alloc(self):
        if self.listener is None and (ca_sector[1] >= 0 or self.esp._pin is not None):
            # The verifier is loaded now, not in the middle of the handshake while
            # TLS holds its large block: a heap too small shows as ESPCONN_MEM here.
            try:
                from . import castore, x509  # noqa: F401
            except MemoryError:
                set_error(self.esp, "no_memory", "no heap to load the certificate verifier", _ESPCONN_MEM)
                return False
        gc.collect()
        self.m0 = _mem_free()
        need = size[self.level] + _RX + _TLS_HEAP
        if self.m0 < need:
            set_error(self.esp, "no_memory", "%d bytes of heap free, a connection needs about %d" % (self.m0, need), _ESPCONN_MEM)
            return False
        try:
            self.rx = bytearray(_RX)
            self.rxmv = memoryview(self.rx)
            self.tx = bytearray(size[self.level])
            self.txmv = memoryview(self.tx)
        except MemoryError:
            self.release()
            set_error(self.esp, "no_memory", "no heap for the connection buffers", _ESPCONN_MEM)
            return False
        return True

    def connect(self, hostname):
        """Start a client connection; _ESPCONN_OK or an error code."""
        import select
        import socket

        esp = self.esp
        tcp = esp.proto.tcp
        if not self.alloc():
            return _ESPCONN_MEM
        self.hostname = hostname
        try:
            addr = socket.getaddrinfo(_ip_text(tcp.remote_ip), tcp.remote_port)[0][-1]
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            self.release()
            set_error(esp, "no_route", "cannot reach %s: %r" % (_ip_text(tcp.remote_ip), e), _ESPCONN_RTE)
            return _ESPCONN_RTE
        except MemoryError:
            self.release()
            set_error(esp, "no_memory", "no heap for a socket", _ESPCONN_MEM)
            return _ESPCONN_MEM
        self.sock = s
        s.setblocking(False)
        try:
            s.connect(addr)
        except OSError as e:
            code = _errno(e)
            if code == _ENETUNREACH or code == _EHOSTUNREACH:
                self.release()
                set_error(esp, "no_route", "no route to %s" % _ip_text(tcp.remote_ip), _ESPCONN_RTE)
                return _ESPCONN_RTE
            if code != _EINPROGRESS and code != _EAGAIN:
                self.release()
                set_error(esp, "connect_failed", "connect failed: errno %d" % code, _ESPCONN_CONN)
                return _ESPCONN_CONN
        self.poller = select.poll()
        self.poller.register(s, select.POLLOUT)
        self.t0 = dispatch.ticks()
        esp.state = _ESPCONN_WAIT
        dispatch.add(self)
        return _ESPCONN_OK

    def start_tls(self):
        import tls

        server_side = self.listener is not None
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_SERVER if server_side else tls.PROTOCOL_TLS_CLIENT)
        try:
            setattr(ctx, "verify_mode", tls.CERT_NONE)  # unix port: mbedTLS would check; axTLS never does
        except (AttributeError, TypeError):
            pass
        if server_side:
            ctx.load_cert_chain(self.listener.cert, self.listener.key)
        elif cert_sector[1] >= 0:
            from .server import read_cert_bin

            c, k = read_cert_bin(cert_sector[1])
            ctx.load_cert_chain(c, k)
        esp = self.esp
        check = None
        if not server_side and (ca_sector[1] >= 0 or esp._pin is not None):
            check = self.check
        self.tap = Tap(self.sock, check, size[self.level])
        if self.hostname:
            self.tls = ctx.wrap_socket(self.tap, server_side=server_side, do_handshake_on_connect=False, server_hostname=self.hostname)
        else:
            self.tls = ctx.wrap_socket(self.tap, server_side=server_side, do_handshake_on_connect=False)

    def check(self, certs):
        """The tap's verifier: the peer's chain (leaf first) or raise EspError."""
        esp = self.esp
        pin = esp._pin
        if pin is not None:
            from .x509 import cert_sha256, spki_sha256

            leaf = certs[0]
            if cert_sha256(leaf) != pin and spki_sha256(leaf) != pin:
                from .errors import VerifyError

                drop_verifier()
                raise VerifyError("pin_mismatch", "the certificate matches neither pinned SHA-256 (certificate or public key)")
            if ca_sector[1] < 0:
                drop_verifier()
                return
        from . import castore  # type: ignore[attr-defined]
        from .x509 import verify_chain

        name = self.hostname or _ip_text(esp.proto.tcp.remote_ip)
        try:
            verify_chain(certs, castore.open(ca_sector[1]), name=name)
        finally:
            drop_verifier()

    # -- the engine ------------------------------------------------------------
    def step(self):
        """Advance this connection; True if anything happened."""
        if self.closed:
            if self.pending is not None:
                self.fire_pending()
                return True
            return False
        if self.tls is None:
            return self.step_connect()
        did = False
        try:
            did = self.step_read()
            if not self.closed and self.up and not self.more and self.txoff < self.txlen:
                did = self.step_write() or did
        except MemoryError:
            set_error(self.esp, "no_memory", "out of heap during TLS", _ESPCONN_MEM)
            self.close(("reconnect", _ESPCONN_ABRT if self.up else _ESPCONN_HANDSHAKE))
            return True
        except Exception as e:  # OSError from the TLS layer, or anything it should not raise
            self.fail(e)
            return True
        return did

    def step_connect(self):
        import select

        ev = self.poller.poll(0)  # type: ignore[union-attr]
        if not ev:
            if dispatch.ticks_diff(dispatch.ticks(), self.t0) > _CONNECT_MS:
                set_error(self.esp, "timeout", "TCP connect timed out", _ESPCONN_TIMEOUT)
                self.close(("reconnect", _ESPCONN_TIMEOUT))
                return True
            return False
        flags = ev[0][1]
        self.poller = None
        if flags & (select.POLLERR | select.POLLHUP):
            set_error(self.esp, "connect_failed", "TCP connection refused or failed", _ESPCONN_CONN)
            self.close(("reconnect", _ESPCONN_CONN))
            return True
        try:
            self.start_tls()
        except MemoryError:
            set_error(self.esp, "no_memory", "no heap for TLS", _ESPCONN_MEM)
            self.close(("reconnect", _ESPCONN_HANDSHAKE))
            return True
        except Exception as e:
            set_error(self.esp, "tls_setup", "TLS set-up failed: %r" % (e,), _ESPCONN_HANDSHAKE)
            self.close(("reconnect", _ESPCONN_HANDSHAKE))
            return True
        # The next step's read starts the handshake (the ClientHello goes out from inside it).
        return True

    def step_read(self):
        did = False
        for _ in range(_READS_PER_STEP):
            n = self.tls.readinto(self.rxmv)  # type: ignore[union-attr]
            tap = self.tap
            if not self.up and tap.finished and tap.verified:  # type: ignore[union-attr]
                self.became_up()
                did = True
                if self.closed:
                    return True
            if n is None:
                self.more = False
                return did
            if n == 0:
                self.more = False
                self.eof()
                return True
            if n < 0:  # an IOBase error code passed through
                raise OSError(-n)
            self.more = True
            did = True
            if not self.up:
                # data before the handshake was seen to finish: fail closed
                raise OSError(5)
            esp = self.esp
            esp.state = _ESPCONN_READ
            _fire(esp, "recv", esp.recv_callback, esp, self.rxmv[:n], n)  # type: ignore[index]
            if self.closed:
                return True
            if esp.state == _ESPCONN_READ:
                esp.state = _ESPCONN_CONNECT
        return did

    def step_write(self):
        end = self.txoff + _OUT
        if end > self.txlen:
            end = self.txlen
        n = self.tls.write(self.txmv[self.txoff : end])  # type: ignore[union-attr, index]
        if not n:
            return False
        self.txoff += n
        if self.txoff >= self.txlen:
            self.txoff = self.txlen = 0
            esp = self.esp
            esp.state = _ESPCONN_CONNECT
            _fire(esp, "write_finish", esp.proto.tcp.write_finish_fn, esp)
            if not self.closed:
                _fire(esp, "sent", esp.sent_callback, esp)
        return True

    def became_up(self):
        self.up = True
        self.poller = None
        gc.collect()
        self.heap = self.m0 - _mem_free()
        esp = self.esp
        esp.state = _ESPCONN_CONNECT
        esp._err = None
        _fire(esp, "connect", esp.proto.tcp.connect_callback, esp)

    def send(self, data, length):
        """Queue ``length`` bytes of data: _ESPCONN_OK or an error code."""
        esp = self.esp
        if not self.up or self.closed:
            set_error(esp, "not_connected", "the connection is not established", _ESPCONN_CONN)
            return _ESPCONN_CONN
        if self.txlen:
            set_error(esp, "in_progress", "the previous send has not finished", _ESPCONN_INPROGRESS)
            return _ESPCONN_INPROGRESS
        if length > len(self.tx):  # type: ignore[arg-type]
            set_error(esp, "too_long", "%d bytes exceed the buffer size %d" % (length, len(self.tx)), _ESPCONN_ARG)  # type: ignore[arg-type]
            return _ESPCONN_ARG
        self.txmv[:length] = memoryview(data)[:length]  # type: ignore[index]
        self.txlen = length
        self.txoff = 0
        esp.state = _ESPCONN_WRITE
        dispatch.kick()
        return _ESPCONN_OK

    # -- endings -------------------------------------------------------------
    def eof(self):
        tap = self.tap
        if not self.up:
            set_error(self.esp, "closed_in_handshake", "peer closed the connection during the handshake", _ESPCONN_HANDSHAKE)
            self.close(("reconnect", _ESPCONN_HANDSHAKE))
        elif tap is not None and tap.err is not None:
            self.fail(OSError(5))
        else:
            self.close(("disconnect", 0))

    def fail(self, e):
        # Map a failed TLS read/write to the SDK's reconnect code and a reason.
        esp = self.esp
        tap = self.tap
        code = _errno(e)
        reason = tap.err if tap is not None else None
        if reason is not None and reason[0] == "oversize_record" or code == -257:  # axTLS RECORD_OVERFLOW
            if reason is None:
                reason = ("oversize_record", "record larger than the TLS buffer (RECORD_OVERFLOW)")
            err = _ESPCONN_SSL_INVALID_DATA
        elif code == _ECONNRESET or (tap is not None and tap.sock_err == _ECONNRESET):
            if reason is None:
                reason = ("reset", "connection reset by the peer " + ("after the handshake" if self.up else "during the handshake"))
            err = _ESPCONN_RST
        elif not self.up:
            if reason is None:
                reason = ("handshake_failed", "TLS handshake failed: %r" % (e,))
            err = _ESPCONN_HANDSHAKE
        else:
            if reason is None:
                reason = ("tls_error", "TLS error: %r" % (e,))
            err = _ESPCONN_SSL_INVALID_DATA if reason[0] != "truncated_record" else _ESPCONN_ABRT
        set_error(esp, reason[0], reason[1], err)
        self.close(("reconnect", err))

    def close(self, pending=None):
        """Release everything now; the callback in ``pending`` fires on the next step."""
        if self.closed:
            return
        self.closed = True
        self.release()
        esp = self.esp
        esp.state = _ESPCONN_CLOSE
        self.pending = pending
        esp._conn = None
        global client
        if client is self:
            client = None
        lst = self.listener
        if lst is not None and lst.child is self:
            lst.child = None
            lst.esp.link_cnt = 0
        if pending is None:
            dispatch.remove(self)
        else:
            dispatch.kick()

    def release(self):
        t = self.tls
        self.tls = None
        if t is not None:
            try:
                t.close()
            except Exception:
                pass
        s = self.sock
        self.sock = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
        if self.tap is not None:
            self.tap.close()
        self.tap = None
        self.poller = None
        self.rx = self.rxmv = self.tx = self.txmv = None  # type: ignore[assignment]
        self.txlen = self.txoff = 0
        drop_verifier()  # a handshake that ended before the check: unload what alloc() loaded

    def fire_pending(self):
        name, code = self.pending  # type: ignore[misc]
        self.pending = None
        dispatch.remove(self)
        esp = self.esp
        if name == "disconnect":
            _fire(esp, name, esp.proto.tcp.disconnect_callback, esp)
        else:
            _fire(esp, name, esp.proto.tcp.reconnect_callback, esp, code)


# The verifier's modules: needed once per handshake, so they are loaded for the
# check (and by alloc(), to surface ESPCONN_MEM early) and dropped afterwards;
# the steady state of an open connection holds only the connection path.
_VERIFIER = ("x509", "castore", "rsa", "der", "names", "binfmt")


def drop_verifier():
    name = __name__[: __name__.rfind(".")]  # the package: "espconn"
    pkg = sys.modules.get(name)
    gone = False
    for m in _VERIFIER:
        if sys.modules.pop(name + "." + m, None) is not None:
            gone = True
        if pkg is not None and m in pkg.__dict__:
            delattr(pkg, m)
    if gone:
        gc.collect()


def new_port():
    global _port
    _port += 1
    if _port > 65000:
        _port = 49153
    return _port

