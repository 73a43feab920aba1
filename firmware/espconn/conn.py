"""One secure connection: state, buffers, SDK rules, the peer check.

The SDK-named layer (espconn/__init__.py) checks arguments and calls in here;
everything later (TCP connect, handshake, peer check, reads, writes,
callbacks) happens in ``step()``, called by espconn.dispatch.

A checked client connection (CA store or pin) is made in two passes, so the
verifier never shares the heap with the TLS library (the README's "RAM on a
real ESP8266" says why that is safe):
  1. capture: TCP + TLS up to the peer's Certificate message, which the tap
     copies into a buffer of its length (at most espconn_secure_set_size);
     then TLS and socket are dropped (the peer saw a ClientHello, nothing else);
  2. check: the verifier modules load, check the captured chain, and are
     unloaded; the message's SHA-256 is kept;
  3. connect: a new TCP + TLS connection whose tap refuses the stream before
     the TLS library reads the last byte of a Certificate message with
     another SHA-256.  connectcb fires once the peer's Finished has passed.
A reconnect to a peer verified before in this boot goes straight to 3 (one
TCP connection): ``peers`` remembers the last _PEERS checks, each keyed by
what the check depended on (CA sector, pin, host name or IP, port) with the
SHA-256, the leaf's modulus size and an expiry (check.run: an hour at most,
never past the leaf's notAfter; a clock set or set back ends it).  If the
peer's Certificate message is not the remembered one, the entry goes and the
connection starts again at 1 (a changed certificate is checked, not refused).
No application byte is written before connectcb, and none received reaches
recvcb before it.  Heap is checked before wrap_socket (room) and by the tap
before axTLS's key exchange, so axTLS never runs out (it would crash).  Order of work in one step, which keeps axTLS happy: read
first (the handshake only advances on reads; afterwards read until "would
block": half-duplex), then write, at most _OUT (1024) bytes at a time.
"""

from micropython import const  # device only: the unix port or a board


import gc
import sys
import time

from . import dispatch
from . import tap as _tap  # one global, not two

# The SDK's codes (espconn.codes), inlined as underscored consts: no globals.
_ESPCONN_OK = const(0)
_ESPCONN_MEM = const(-1)
_ESPCONN_TIMEOUT = const(-3)
_ESPCONN_RTE = const(-4)
_ESPCONN_INPROGRESS = const(-5)
_ESPCONN_ABRT = const(-8)
_ESPCONN_RST = const(-9)
_ESPCONN_CONN = const(-11)
_ESPCONN_ARG = const(-12)
_ESPCONN_HANDSHAKE = const(-28)
_ESPCONN_SSL_INVALID_DATA = const(-61)
_ST_WAIT = const(1)
_ST_CONNECT = const(3)
_ST_WRITE = const(4)
_ST_READ = const(5)
_ST_CLOSE = const(6)

_OUT = const(1024)  # axTLS cuts plaintext into 1024-byte records: write no more at once
_RX = const(1024)  # decrypted bytes handed to recvcb per call
_HS_RX = const(64)  # read buffer during the handshake (data then is refused anyway)
_READS = const(8)  # reads in one step (fairness between connections)
_CONNECT_MS = const(10000)  # TCP connect timeout (lwIP's SYN retries take about as long)
# Free heap checked before every wrap_socket, measured on real axTLS (32-bit,
# RT_MAX_PLAIN_LENGTH 1024, RT_EXTRA 4096, allocating from the GC heap): from
# the context to the peer's Certificate message axTLS takes ~8 KB and did not
# crash with 9 KB free; _TLS_HEAP leaves 1 KB over that.  Its 5.3 KB SSL
# buffer is one piece: a _TLS_BLOCK block is asked for before the context and
# again just before wrap_socket, together with the pieces wrap_socket takes
# before and after it (a fragmented heap crashed there: the axTLS context is
# made inside wrap_socket, not by SSLContext).  The key exchange that follows
# is checked by the tap, which knows the peer's key by then (tap._KX_HEAP).
_TLS_HEAP = const(10240)
_TLS_BLOCK = const(5632)
_TLS_CTX = const(640)  # wrap_socket's first: the axTLS context, two pieces of up to 609 bytes
_TLS_NEXT = const(1024)  # and the 792-byte block axTLS takes right after the SSL buffer
# Server role (its RSA private-key operation): 10 KB + 4 B per byte of its
# PKCS#1 key, i.e. RSA-1024/2048/4096 12.6/15.0/19.6 KB; it did not crash with
# 11.6/13.9/17.5 KB free (measured as above, 1 KB steps).  The same is added
# for a client's own key (a client certificate).
_SRV_HEAP = const(10240)
_KEY_BYTE = const(4)

_EAGAIN = const(11)  # errno values (same on lwIP and Linux for these)
_EINPROGRESS = const(115)
_ECONNRESET = const(104)
_ENETUNREACH = const(101)
_EHOSTUNREACH = const(113)
# Text ids of its failures (espconn/texts.py)
_T_CONNECT = const(12)
_T_ROUTE = const(13)
_T_TIMEOUT = const(14)
_T_REFUSED = const(15)
_T_NOT_UP = const(16)
_T_PENDING = const(17)
_T_TOO_LONG = const(18)
_T_CLOSED_HS = const(19)
_T_RESET = const(20)
_T_HS_FAILED = const(21)
_T_TLS_ERROR = const(22)
_T_CHANGED = const(28)  # the tap's certificate_changed
_T_CUT_RESET = const(29)  # 29..30 truncated, 31..33 oversize, 34.. no memory
_T_OVERFLOW = const(31)
_T_MEM_CONN = const(34)
_T_MEM_BUF = const(35)
_T_MEM_SOCK = const(36)
_T_MEM_TLS = const(37)
_T_MEM_VERIFY = const(38)
_T_MEM_RUN = const(39)
_T_MEM_COPY = const(40)

# Settings, per level (index 1 = client, 2 = server), as the SDK keeps them.
ca_sector = [-1, -1, -1]  # CA store sector for the check, -1: no check
cert_sector = [-1, -1, -1]  # esp_cert_private_key.bin sector, -1: none
size = [2048, 2048, 2048]  # SSL buffer size (espconn_secure_set_size)
default_cert = None  # espconn_secure_set_default_certificate(): server certificate DER
default_key = None  # espconn_secure_set_private_key(): server key, PKCS#1 DER
client = None  # type: object  # the one client Conn, or None
server = None  # type: object  # the one Listener, or None
anchors = []  # type: list  # SHA-256 of CA anchors whose own signature checked: once per boot
# Checked peers, newest first: (sector, pin, name, port, SHA-256, modulus bytes, made, expiry)
peers = []  # type: list
_PEERS = const(3)


def room(need=0, pieces=False, m=0):
    """True if the heap holds ``need`` bytes and a _TLS_BLOCK piece of them;
    with ``pieces``, also the pieces wrap_socket takes in the order it takes
    them, held together: the context's (_TLS_CTX), the SSL buffer, the next
    (_TLS_NEXT), and for this side's own RSA key of ``m`` modulus bytes the
    bigints of its private-key operation (as tap._KX_PIECES): tap.hold."""
    if not pieces:
        return _tap.hold((_TLS_BLOCK,), need)
    return _tap.hold([_TLS_CTX, _TLS_CTX, _TLS_BLOCK, _TLS_NEXT] + [k * m + 16 for k in (_tap._KX_PIECES if m else b"")], need)


def set_error(esp, err, code=0):
    # err: (text id, *numbers) (see texts.py), or a (reason, text) pair
    esp._err = err
    esp._errcode = code


def ip_text(ip):
    return "%d.%d.%d.%d" % (ip[0], ip[1], ip[2], ip[3])


def fire(esp, name, cb, a=None, b=None):
    # cb(esp), cb(esp, a) or cb(esp, a, b): no argument tuple built per event
    d = dispatch
    if d.watch:  # a dispatch.wait() is running: it watches these counts
        esp._events += 1
        esp._last = name
        d.events += 1
        d.last = name
    if cb is not None:
        try:
            if a is None:
                cb(esp)
            elif b is None:
                cb(esp, a)
            else:
                cb(esp, a, b)
        except Exception as e:  # a user callback must not stop the engine, as in the SDK
            sys.print_exception(e)  # type: ignore[attr-defined]


def nodelay(s):
    # TCP_NODELAY (modlwip has it since MicroPython 1.23): axTLS writes each
    # handshake message on its own, and with Nagle's algorithm the next one
    # waits for the peer's delayed ACK (40 ms from Linux) in every handshake.
    import socket

    nd = getattr(socket, "TCP_NODELAY", 0)
    if nd:
        s.setsockopt(socket.IPPROTO_TCP, nd, 1)


def errno(e):
    code = e.args[0] if e.args else 0
    return code if isinstance(code, int) else 0


class Conn:
    """One TLS connection: a client, or the client a server accepted."""

    def __init__(self, esp, listener):
        self.esp = esp
        self.listener = listener  # the Listener for a server-side connection
        self.level = 2 if listener is not None else 1
        self.sock = self.tls = self.tap = self.poller = None
        self.hostname = None if listener else esp._host  # SNI and the name check (a client's)
        # the peer check: 0 none, 1 in two passes, 2 a check remembered (peers): pass 3 at once
        self.check = 1 if listener is None and (ca_sector[1] >= 0 or esp._pin is not None) else 0
        self.want = None  # SHA-256 of the checked Certificate message (pass 3)
        self.end = 0  # until when that check may be remembered (check.run), once connected
        self.mod = 0  # and its leaf's RSA modulus bytes (the tap's key-exchange check)
        self.t0 = self.heap = self.m0 = self.txlen = self.txoff = 0
        self.up = self.closed = False
        self.rx = self.rxmv = self.out = None
        self.pending = None  # (name, code) of a callback to fire after close

    # -- set-up ------------------------------------------------------------
    def alloc(self):
        # Heap for TCP + TLS; the receive buffer comes once the handshake is over
        # (not held through axTLS's key exchange nor the chain check): until
        # then reads go into a _HS_RX one.  Sent data is not copied unless it
        # is mutable (see send).
        if not room(_TLS_HEAP):
            set_error(self.esp, (_T_MEM_CONN, gc.mem_free(), _TLS_BLOCK, _TLS_HEAP), _ESPCONN_MEM)
            return False
        self.m0 = gc.mem_free()
        try:
            self.rxmv = memoryview(bytearray(_HS_RX))
        except MemoryError:
            self.release()
            set_error(self.esp, (_T_MEM_BUF,), _ESPCONN_MEM)
            return False
        return True

    def open(self):
        # A non-blocking TCP connect; step() watches it.
        import select
        import socket

        esp = self.esp
        tcp = esp.proto.tcp
        try:
            addr = socket.getaddrinfo(ip_text(tcp.remote_ip), tcp.remote_port)[0][-1]
            s = self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            nodelay(s)
            try:
                s.connect(addr)
            except OSError as e:
                code = errno(e)
                if code != _EINPROGRESS and code != _EAGAIN:
                    raise
            self.poller = select.poll()
            self.poller.register(s, select.POLLOUT)
        except MemoryError:
            return self.refuse((_T_MEM_SOCK,), _ESPCONN_MEM)
        except OSError as e:
            code = errno(e)
            if code == _ENETUNREACH or code == _EHOSTUNREACH:
                return self.refuse((_T_ROUTE, ip_text(tcp.remote_ip)), _ESPCONN_RTE)
            return self.refuse((_T_CONNECT, code), _ESPCONN_CONN)
        self.t0 = time.ticks_ms()  # type: ignore[assignment]
        esp.state = _ST_WAIT
        dispatch.add(self)
        return _ESPCONN_OK

    def refuse(self, err, code):
        set_error(self.esp, err, code)
        if self.want is None:  # connect() returns the code
            self.release()
            return code
        self.close(("reconnect", code))  # pass 3: connect() has long returned
        return code

    def start_tls(self):
        """wrap_socket behind a tap; False (reason set) if the heap cannot hold TLS."""
        cap = self.check and self.want is None
        lst = self.listener
        c = k = None
        if lst:
            c, k = lst.cert, lst.key
        elif cert_sector[1] >= 0:
            from .server import read_cert_bin

            c, k = read_cert_bin(cert_sector[1])
        # this side's RSA private-key operation (a server's, or a client certificate's)
        x = _KEY_BYTE * len(k) if k else 0
        n = (_SRV_HEAP if lst else _TLS_HEAP) + x
        if not room(n):
            set_error(self.esp, (_T_MEM_TLS, gc.mem_free(), _TLS_BLOCK, n), _ESPCONN_MEM)
            return False
        import tls

        ctx = tls.SSLContext(tls.PROTOCOL_TLS_SERVER if lst else tls.PROTOCOL_TLS_CLIENT)
        try:
            setattr(ctx, "verify_mode", tls.CERT_NONE)  # unix port: mbedTLS would check; axTLS never does
        except (AttributeError, TypeError):
            pass
        if k:
            ctx.load_cert_chain(c, k)
        # pass 1: the tap captures the whole Certificate message (up to set_size bytes)
        self.tap = _tap.Tap(self.sock, self.want, size[self.level], size[1] if cap else 0, self.mod, 0 if lst else x)
        # Last before wrap_socket (nothing else allocates in between): the SSL buffer's
        # piece is still whole; the context and the tap may have split the one seen above.
        if not room(0, True, len(k) * 2 // 9 if k else 0):  # (PKCS#1 DER: ~4.5 bytes per modulus byte)
            set_error(self.esp, (_T_MEM_TLS, gc.mem_free(), _TLS_BLOCK, n), _ESPCONN_MEM)
            return False
        if self.hostname:
            self.tls = ctx.wrap_socket(self.tap, server_side=lst is not None, do_handshake_on_connect=False, server_hostname=self.hostname)
        else:
            self.tls = ctx.wrap_socket(self.tap, server_side=lst is not None, do_handshake_on_connect=False)
        return True

    def verify(self):
        # Pass 2: the tap holds the peer's Certificate message; TLS and socket go first.
        n = self.tap.got  # type: ignore[union-attr]
        cap = self.tap.buf  # type: ignore[union-attr]  # a local: one attribute less on every Conn
        self.drop()
        self.mod = _tap.modulus(cap, n)
        esp = self.esp
        try:
            from . import check

            self.want, self.end = check.run(memoryview(cap)[:n], ca_sector[1], esp._pin, self.hostname or ip_text(esp.proto.tcp.remote_ip), anchors)  # type: ignore[arg-type]
            self.forget()
        except MemoryError:
            set_error(esp, (_T_MEM_VERIFY,), _ESPCONN_MEM)
            self.close(("reconnect", _ESPCONN_MEM))
            return
        except Exception as e:
            set_error(esp, (getattr(e, "reason", "verify_failed"), str(e)), _ESPCONN_HANDSHAKE)
            self.close(("reconnect", _ESPCONN_HANDSHAKE))
            return
        finally:
            cap = None  # noqa: F841
            drop_verifier()
        self.open()  # pass 3

    # -- the engine ------------------------------------------------------------
    def step(self):
        """Advance this connection; True if it left work that needs no new bytes
        from the network (decrypted data not yet read, a send not all written,
        a callback to fire): dispatch then steps again at once, else it waits
        on the socket.  One pass per event: the reads, then the write."""
        if self.closed:
            if self.pending is None:
                return False
            name, code = self.pending
            self.pending = None
            dispatch.remove(self)
            esp = self.esp
            if name == "disconnect":
                fire(esp, name, esp.proto.tcp.disconnect_callback)
            else:
                fire(esp, name, esp.proto.tcp.reconnect_callback, code)
            return True
        tls = self.tls
        if tls is None:
            return self.step_connect()
        esp = self.esp
        tap = self.tap
        up = self.up
        mv = self.rxmv
        m = _RX if up else _HS_RX  # its length (len() is a builtin lookup: not per read)
        k = _READS
        try:
            while True:  # read until "would block" first (half-duplex)
                if not k:
                    return True  # fairness: the rest (and the write) in the next round
                k -= 1
                b, bm = mv, m  # this read's buffer (the handshake's until it ends)
                left = tap.left  # type: ignore[union-attr]
                n = tls.readinto(b)  # type: ignore[union-attr]
                if not up:
                    if tap.got:  # type: ignore[union-attr]
                        self.verify()
                        return True
                    if tap.finished and tap.seen:  # type: ignore[union-attr]
                        # handshake over, peer checked: connected
                        self.up = up = True
                        self.rx = bytearray(_RX)  # (MemoryError: closes with ESPCONN_MEM)
                        mv = self.rxmv = memoryview(self.rx)
                        m = _RX
                        gc.collect()
                        h = self.m0 - gc.mem_free()
                        self.heap = h if h > 0 else 0
                        esp.state = _ST_CONNECT
                        esp.link_cnt = 1
                        esp._err = None
                        if self.end:
                            # remembered once this peer proved it holds the checked
                            # message (after axTLS's peak: no heap taken there)
                            t = esp.proto.tcp
                            peers.insert(0, (ca_sector[1], esp._pin, self.hostname or ip_text(t.remote_ip), t.remote_port, self.want, self.mod, int(time.time()), self.end))
                            del peers[_PEERS:]
                            self.end = 0
                        fire(esp, "connect", esp.proto.tcp.connect_callback)
                        if self.closed:
                            return True
                if n is None:
                    if tap.left != left:  # type: ignore[union-attr]
                        # axTLS took a record header (or part of a body) and stopped:
                        # the rest is often there already, read it now, not after a wait
                        continue
                    break
                if n <= 0 or not up:
                    # EOF, an error code passed through, or data before the handshake was seen to end
                    self.fail(None if n == 0 else OSError(-n if n < 0 else 5))
                    return True
                esp.state = _ST_READ
                # fire(esp, "recv", ...) written out: once per message
                if dispatch.watch:
                    fire(esp, "recv", None)
                cb = esp.recv_callback
                if cb is not None:
                    try:
                        cb(esp, b if n == bm else b[:n], n)  # type: ignore[index]
                    except Exception as e:  # a user callback must not stop the engine
                        sys.print_exception(e)  # type: ignore[attr-defined]
                if self.closed:
                    return True
                if esp.state == _ST_READ:
                    esp.state = _ST_CONNECT
                if n < bm and not tap.left:  # type: ignore[union-attr]
                    # a short read ends where the TLS layer met "would block" (readinto
                    # fills the buffer or stops there) and no record is half-read
                    break
            t = self.txlen
            if not t or not up:
                return False
            # then at most _OUT bytes (one axTLS record) of the pending send
            off = self.txoff
            end = off + _OUT
            if end > t:
                end = t
            o = self.out  # (len(o) == t: see send)
            n = tls.write(o if end == t and not off else memoryview(o)[off:end])  # type: ignore[union-attr, arg-type]
            if not n:
                return True
            off += n
            if off < t:
                self.txoff = off
                return True
            self.txoff = self.txlen = 0
            self.out = None
            esp.state = _ST_CONNECT
            w = dispatch.watch
            cb = esp.proto.tcp.write_finish_fn
            if cb is not None or w:
                fire(esp, "write_finish", cb)
            cb = esp.sent_callback
            if (cb is not None or w) and not self.closed:
                fire(esp, "sent", cb)
            return self.closed or self.txlen > 0
        except MemoryError:
            set_error(esp, (_T_MEM_RUN,), _ESPCONN_MEM)
            self.close(("reconnect", _ESPCONN_MEM))
        except Exception as e:  # OSError from the TLS layer, or anything it should not raise
            self.fail(e)
        return True

    def step_connect(self):
        import select

        ev = self.poller.poll(0)  # type: ignore[union-attr]
        if not ev:
            if time.ticks_diff(time.ticks_ms(), self.t0) > _CONNECT_MS:
                set_error(self.esp, (_T_TIMEOUT,), _ESPCONN_TIMEOUT)
                self.close(("reconnect", _ESPCONN_TIMEOUT))
                return True
            return False
        self.poller = None
        dispatch._pl[1] = True  # run() waits for this socket's data from now on
        if ev[0][1] & (select.POLLERR | select.POLLHUP):
            set_error(self.esp, (_T_REFUSED,), _ESPCONN_CONN)
            self.close(("reconnect", _ESPCONN_CONN))
        else:
            if self.check == 1 and self.want is None:
                # a peer checked before (the same store, pin, name and port): straight to pass 3
                p = self.forget()
                if p is not None:
                    t = int(time.time())
                    if p[6] <= t <= p[7]:
                        self.want, self.mod, self.check = p[4], p[5], 2
                        peers.insert(0, p)
            if not self.start_tls():
                self.close(("reconnect", _ESPCONN_MEM))
        # The next step's read starts the handshake (the ClientHello goes out from inside it).
        return True

    def forget(self):
        # Take this connection's peer out of ``peers``; the entry, or None.
        esp = self.esp
        tcp = esp.proto.tcp
        k = (ca_sector[1], esp._pin, self.hostname or ip_text(tcp.remote_ip), tcp.remote_port)
        for p in peers:
            if p[:4] == k:
                peers.remove(p)
                return p
        return None

    def send(self, data, length, whole=False):
        """Queue ``length`` bytes of data (``whole``: all of a bytes object, length
        None then): _ESPCONN_OK or an error code."""
        esp = self.esp
        if not self.up or self.closed:
            set_error(esp, (_T_NOT_UP,), _ESPCONN_CONN)
            return _ESPCONN_CONN
        if self.txlen:
            set_error(esp, (_T_PENDING,), _ESPCONN_INPROGRESS)
            return _ESPCONN_INPROGRESS
        if length is None:
            length = len(data)
        if length > size[self.level]:
            set_error(esp, (_T_TOO_LONG, length, size[self.level]), _ESPCONN_ARG)
            return _ESPCONN_ARG
        if not whole:
            mv = memoryview(data)[:length]
            if isinstance(data, bytes):
                data = mv
            else:
                # mutable: copied, as the SDK copies into its buffer (the caller may reuse it at once)
                try:
                    data = bytes(mv)
                except MemoryError:
                    set_error(esp, (_T_MEM_COPY, length), _ESPCONN_MEM)
                    return _ESPCONN_MEM
        self.out = data  # (len(out) == txlen: step relies on it; txoff is 0 when txlen is)
        self.txlen = length
        esp.state = _ST_WRITE
        d = dispatch
        if d.cur is not self:  # (this connection's own step writes it before it returns)
            d.kicked = True
        return _ESPCONN_OK

    # -- endings -------------------------------------------------------------
    def fail(self, e):
        # A failed or ended TLS read/write (e None: EOF) -> the SDK's callback and a reason.
        # The tap saw every byte and socket error first: what it recorded wins
        # over whatever the TLS layer made of it (axTLS: EOF for any stream error).
        tap = self.tap
        if tap is not None and tap.got:
            return self.verify()
        code = 0 if e is None else errno(e)
        r = tap.err if tap is not None else None
        if self.check == 2 and r is not None and r[0] == _T_CHANGED:
            # not the Certificate message remembered (peers): the entry goes, and
            # the full check runs, from pass 1 on a new connection
            self.forget()
            self.drop()
            self.check = 1
            if self.open() == _ESPCONN_OK:  # (want still set: a failure closes with reconcb)
                self.want = None
                self.mod = 0
            return None
        se = tap.sock_err if tap is not None else 0
        if r is None and e is None and not se:
            if self.up:
                return self.close(("disconnect", 0))
            r = (_T_CLOSED_HS,)
        i = r[0] if r is not None else -1  # the tap's text id: its kind by range (texts.py)
        if _T_OVERFLOW <= i < _T_MEM_CONN or code == -257:  # axTLS SSL_ERROR_RECORD_OVERFLOW
            r = r or (_T_OVERFLOW,)
            err = _ESPCONN_SSL_INVALID_DATA
        elif i >= _T_MEM_CONN:
            err = _ESPCONN_MEM
        elif se == _ECONNRESET or code == _ECONNRESET:
            r = r or (_T_RESET, "after" if self.up else "during")
            err = _ESPCONN_RST
        elif not self.up:
            r = r or (_T_HS_FAILED, repr(e))
            err = _ESPCONN_HANDSHAKE
        else:
            r = r or (_T_TLS_ERROR, repr(e))
            err = _ESPCONN_ABRT if _T_CUT_RESET <= i < _T_OVERFLOW else _ESPCONN_SSL_INVALID_DATA
        set_error(self.esp, r, err)
        self.close(("reconnect", err))

    def close(self, pending=None):
        """Release everything now; the callback in ``pending`` fires on the next step."""
        if self.closed:
            return
        self.closed = True
        self.release()
        esp = self.esp
        esp.state = _ST_CLOSE
        esp.link_cnt = 0
        esp._conn = None
        self.pending = pending
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
            dispatch.kicked = True

    def drop(self):
        # TLS, tap and socket go (buffers stay).
        t, s = self.tls, self.sock
        self.tls = self.sock = self.tap = self.poller = None
        if t is not None:
            try:
                t.close()  # closes the tap, which closes the socket
            except Exception:
                pass
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def release(self):
        self.drop()
        self.rx = self.rxmv = self.out = None
        self.txlen = self.txoff = 0


def drop_verifier():
    # The verifier's modules: loaded for the check (pass 2) and dropped at once,
    # so their bytecode goes back to the heap before the next TLS connection.
    # (Names written here, not a global: each module global is heap from a ROMFS.)
    name = __name__[: __name__.rfind(".")]  # the package: "espconn"
    pkg = sys.modules.get(name)
    for m in ("check", "x509", "castore", "binfmt", "errors"):
        sys.modules.pop(name + "." + m, None)
        if pkg is not None and m in pkg.__dict__:
            delattr(pkg, m)
    gc.collect()

