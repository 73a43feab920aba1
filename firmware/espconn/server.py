"""The secure server (loaded only by espconn_secure_accept) and the device's own
certificate and key from an esp_cert_private_key.bin sector.

Kept out of conn.py so that a client-only program never loads it: on the
ESP8266 every loaded module's bytecode takes heap.
"""

from micropython import const  # device only: the unix port or a board


from . import conn as _c

_SECTOR = const(4096)  # SPI_FLASH_SEC_SIZE
_EADDRINUSE = const(98)
_ESPCONN_OK = const(0)
_ESPCONN_ARG = const(-12)
_ESPCONN_ISCONN = const(-15)
_ESPCONN_NONE = const(0)
_ESPCONN_LISTEN = const(2)
_ESPCONN_TCP = const(16)
_ESPCONN_WAIT = const(1)
_ESPCONN_MEM = const(-1)
_ESPCONN_HANDSHAKE = const(-28)


def _accepted(c, s):
    # Server side (kept out of conn.py): conn c takes over the accepted socket s
    # and starts the handshake; False (reason set on c.esp) if it cannot.
    if not c.alloc():
        try:
            s.close()
        except OSError:
            pass
        return False
    c.sock = s
    c.hostname = None
    s.setblocking(False)
    _c.nodelay(s)
    c.esp.state = _ESPCONN_WAIT
    try:
        if not c.start_tls():
            c.release()
            return False
    except MemoryError:
        c.release()
        _c.set_error(c.esp, ("no_memory", "no heap for TLS"), _ESPCONN_MEM)
        return False
    except Exception as e:
        c.release()
        _c.set_error(c.esp, ("tls_setup", "TLS set-up failed: %r" % (e,)), _ESPCONN_HANDSHAKE)
        return False
    _c.dispatch.add(c)
    return True


def accept(e):
    """espconn_secure_accept: ESPCONN_OK, or a code with the reason on ``e``."""
    c = _c
    if c.server is not None:
        c.set_error(e, ("is_listening", "a secure server is already listening (one per device, as on the SDK)"), _ESPCONN_ISCONN)
        return _ESPCONN_ISCONN
    port = e.proto.tcp.local_port
    if not isinstance(port, int) or not 0 < port < 65536:
        c.set_error(e, ("bad_port", "proto.tcp.local_port must be 1..65535"), _ESPCONN_ARG)
        return _ESPCONN_ARG
    cert, key = c.default_cert, c.default_key
    if c.cert_sector[2] >= 0:
        try:
            cert, key = read_cert_bin(c.cert_sector[2])
        except MemoryError:
            c.set_error(e, ("no_memory", "no heap to read the certificate and key from flash"), _ESPCONN_MEM)
            return _ESPCONN_MEM
        except Exception as ex:
            c.set_error(e, (getattr(ex, "reason", "no_cert_key"), str(ex)), _ESPCONN_ARG)
            return _ESPCONN_ARG
    if cert is None or key is None:
        c.set_error(e, ("no_cert_key", "set the server certificate and key first (set_default_certificate/private_key or cert_req_enable)"), _ESPCONN_ARG)
        return _ESPCONN_ARG
    lst = Listener(e, cert, key)
    e._conn = c.server = lst
    r = lst.listen()
    if r != _ESPCONN_OK:
        e._conn = c.server = None
    return r


def _peer(addr):
    # accept()/getpeername() address -> (ip bytes, port).  ESP8266: ("a.b.c.d", port);
    # unix port: a raw struct sockaddr_in (family 2, port big-endian, address).
    if isinstance(addr, tuple):
        return bytes(int(p) for p in addr[0].split(".")), addr[1]
    return bytes(addr[4:8]), addr[2] << 8 | addr[3]


def read_cert_bin(sector):
    """(certificate DER, key DER) from an esp_cert_private_key.bin sector;
    the bin reader (binfmt) is unloaded again afterwards."""
    try:
        return _read_cert_bin(sector)
    finally:
        _c.drop_verifier()


def _read_cert_bin(sector):
    import esp  # type: ignore[import-not-found]

    from . import binfmt

    buf = bytearray(_SECTOR)
    esp.flash_read(sector * _SECTOR, buf)
    cert = key = None
    for name, data in binfmt.parse(buf):
        if binfmt.data_kind(data) == binfmt.KIND_PEM:
            for label, der_bytes in binfmt.pem_blocks(data):
                if b"KEY" in label:
                    key = der_bytes
                elif b"CERT" in label and cert is None:
                    cert = der_bytes
            continue
        if len(data) < 8 or data[0] != 0x30:
            continue
        # SEQUENCE { INTEGER version, ...} is a key, SEQUENCE { SEQUENCE tbs, ...} a certificate
        i = 2 + (data[1] & 0x7F if data[1] & 0x80 else 0)
        if data[i] == 0x02:
            key = bytes(data)
        elif data[i] == 0x30 and cert is None:
            cert = bytes(data)
    if cert is None or key is None:
        from .errors import StoreError

        raise StoreError("no_cert_key", "sector 0x%x holds no certificate and private key" % sector)
    return cert, key


class Listener:
    """The one secure server: accepts one client at a time."""

    def __init__(self, esp, cert, key):
        self.esp = esp
        self.cert = cert
        self.key = key
        self.sock = None
        self.child = None
        self.closed = False
        self.refused = 0  # clients turned away while one was connected

    def listen(self):
        import socket

        tcp = self.esp.proto.tcp
        ip = tcp.local_ip
        host = _c.ip_text(ip) if ip and any(ip) else "0.0.0.0"
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock = s
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(socket.getaddrinfo(host, tcp.local_port)[0][-1])
            s.listen(1)
            s.setblocking(False)
        except OSError as e:
            self.release()
            code = _c.errno(e)
            _c.set_error(self.esp, ("listen_failed", "cannot listen on %s:%d: errno %d" % (host, tcp.local_port, code)), _ESPCONN_ARG)
            return _ESPCONN_ARG if code != _EADDRINUSE else _ESPCONN_ISCONN
        self.esp.state = _ESPCONN_LISTEN
        _c.dispatch.add(self)
        return _ESPCONN_OK

    def step(self):
        if self.closed:
            return False
        try:
            r = self.sock.accept()  # type: ignore[union-attr]
        except OSError:
            return False  # EAGAIN: nobody waiting
        s, addr = r[0], r[1]
        if self.child is not None:
            self.child.step()  # its FIN may be waiting: let it close first
        if self.child is not None:
            # One client on the secure server (SDK rule): turn the second away.
            self.refused += 1
            try:
                s.close()
            except OSError:
                pass
            return True
        from . import espconn as _espconn, esp_tcp

        srv = self.esp
        e = _espconn()
        e.type = _ESPCONN_TCP
        t = esp_tcp()
        st = srv.proto.tcp
        t.local_port = st.local_port
        t.local_ip = st.local_ip
        try:
            t.remote_ip, t.remote_port = _peer(addr)
        except Exception:
            pass
        t.connect_callback = st.connect_callback
        t.reconnect_callback = st.reconnect_callback
        t.disconnect_callback = st.disconnect_callback
        t.write_finish_fn = st.write_finish_fn
        e.proto.tcp = t
        e.recv_callback = srv.recv_callback
        e.sent_callback = srv.sent_callback
        e.reverse = srv.reverse
        e._pin = None
        c = _c.Conn(e, self)
        e._conn = c
        self.child = c
        srv.link_cnt = 1
        e.link_cnt = 1
        if not _accepted(c, s):
            # Turned away for want of heap or a TLS set-up failure: tell the server's owner.
            self.child = None
            srv.link_cnt = 0
            e._conn = None
            srv._err = e._err
            _c.fire(srv, "reconnect", st.reconnect_callback, e._errcode)
        return True

    def release(self):
        s = self.sock
        self.sock = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.child is not None:
            self.child.close()
        self.release()
        self.esp.state = _ESPCONN_NONE
        self.esp._conn = None
        if _c.server is self:
            _c.server = None
        _c.dispatch.remove(self)
