"""espconn: Espressif's ESP8266 SDK SSL API (espconn_secure_*) for MicroPython.

Nothing heavy runs at import: submodules (x509, castore, ...) load when first
used, so the host tools can import the shared codecs (``espconn.binfmt``)
without pulling in the device API.
"""

from .codes import *  # noqa: F401,F403  ESPCONN_* codes, states, types, levels
from .codes import (
    ESPCONN_ARG,
    ESPCONN_CONN,
    ESPCONN_INPROGRESS,
    ESPCONN_ISCONN,
    ESPCONN_NONE,
    ESPCONN_OK,
    ESPCONN_TCP,
)

_SIZE_MIN = 2048  # espconn_secure_set_size bounds (SDK)
_SIZE_MAX = 8192
_last = None  # (reason, text) of the last refused call with no espconn to hold it


class esp_tcp:
    """The SDK's ``esp_tcp``: ports, addresses (4 bytes each) and the TCP callbacks."""

    def __init__(self):
        self.remote_port = 0
        self.local_port = 0
        self.local_ip = b"\0\0\0\0"
        self.remote_ip = b"\0\0\0\0"
        self.connect_callback = None
        self.reconnect_callback = None
        self.disconnect_callback = None
        self.write_finish_fn = None


class _proto:
    # the SDK's union { esp_tcp *tcp; esp_udp *udp; } proto
    def __init__(self):
        self.tcp = esp_tcp()
        self.udp = None


class espconn:
    """The SDK's ``struct espconn``: type, state, proto.tcp, callbacks, link_cnt, reverse."""

    def __init__(self, type=ESPCONN_TCP):
        self.type = type
        self.state = ESPCONN_NONE
        self.proto = _proto()
        self.recv_callback = None
        self.sent_callback = None
        self.link_cnt = 0
        self.reverse = None  # user data
        self._conn = None  # conn.Conn / conn.Listener while open
        self._err = None  # (reason, text) of the last failure
        self._errcode = 0  # ESPCONN_* code that went with it
        self._pin = None  # SHA-256 of the accepted certificate or public key
        self._host = None  # espconn_secure_set_hostname()
        self._events = 0  # callbacks fired on this espconn (dispatch.wait)
        self._last = None  # name of the last callback fired


def _ok(e):
    # A usable espconn for a TCP call: the SDK answers ESPCONN_ARG otherwise.
    if not isinstance(e, espconn) or e.type != ESPCONN_TCP:
        return False
    t = e.proto.tcp
    return t is not None and not isinstance(t, (int, str, bytes))


def _refuse(e, reason, text):
    global _last
    _last = (reason, text)
    if isinstance(e, espconn):
        e._err = _last
    return False


# -- callbacks (return ESPCONN_OK, or ESPCONN_ARG for a bad espconn) -----------
def _regist(e, on_tcp, field, cb):
    # The SDK keeps connect/reconnect/disconnect/write-finish callbacks in
    # esp_tcp and recv/sent in espconn itself: so do we.
    if not _ok(e):
        return ESPCONN_ARG
    setattr(e.proto.tcp if on_tcp else e, field, cb)
    return ESPCONN_OK


def espconn_regist_connectcb(e, cb):
    return _regist(e, True, "connect_callback", cb)


def espconn_regist_reconcb(e, cb):
    return _regist(e, True, "reconnect_callback", cb)


def espconn_regist_disconcb(e, cb):
    return _regist(e, True, "disconnect_callback", cb)


def espconn_regist_write_finish(e, cb):
    return _regist(e, True, "write_finish_fn", cb)


def espconn_regist_recvcb(e, cb):
    return _regist(e, False, "recv_callback", cb)


def espconn_regist_sentcb(e, cb):
    return _regist(e, False, "sent_callback", cb)


def espconn_port():
    """A free local port number, as the SDK hands out."""
    from . import conn

    return conn.new_port()


# -- settings: levels 1 (client), 2 (server), 3 (both); before connect/accept --
def _settable(level):
    from . import conn

    if level not in (1, 2, 3):
        _refuse(None, "bad_level", "level must be ESPCONN_CLIENT (1), ESPCONN_SERVER (2) or ESPCONN_BOTH (3)")
        return None
    if conn.busy(level):
        _refuse(None, "busy", "settings are made before espconn_secure_connect/accept")
        return None
    return conn


def espconn_secure_set_size(level, size):
    """SSL buffer size, 2048..8192 bytes: True, or False (bad level/size, or too late)."""
    c = _settable(level)
    if c is None:
        return False
    if not isinstance(size, int) or not _SIZE_MIN <= size <= _SIZE_MAX:
        return _refuse(None, "bad_size", "size must be 2048..8192")
    if level & 1:
        c.size[1] = size
    if level & 2:
        c.size[2] = size
    return True


def espconn_secure_get_size(level):
    """The SSL buffer size of ``level`` (the client's for ESPCONN_BOTH), or False."""
    if level not in (1, 2, 3):
        return False
    from . import conn

    return conn.size[1 if level & 1 else 2]


def espconn_secure_ca_enable(level, flash_sector):
    """Check the peer's certificate chain against the CA store at ``flash_sector``.

    Only ESPCONN_CLIENT: axTLS cannot request a client certificate, so a server
    cannot check one; levels 2 and 3 return False (the reason says so)."""
    c = _settable(level)
    if c is None:
        return False
    if level & 2:
        return _refuse(None, "unsupported", "axTLS cannot request a client certificate: a server cannot check one")
    if not isinstance(flash_sector, int) or flash_sector < 0 or flash_sector > 0xFFF:
        return _refuse(None, "bad_sector", "flash_sector must be a sector number")
    c.ca_sector[1] = flash_sector
    return True


def espconn_secure_ca_disable(level):
    c = _settable(level)
    if c is None:
        return False
    if level & 1:
        c.ca_sector[1] = -1
    if level & 2:
        c.ca_sector[2] = -1
    return True


def espconn_secure_cert_req_enable(level, flash_sector):
    """Take this device's own certificate and key from an esp_cert_private_key.bin
    sector (client: sent when the server asks; server: its certificate)."""
    c = _settable(level)
    if c is None:
        return False
    if not isinstance(flash_sector, int) or flash_sector < 0 or flash_sector > 0xFFF:
        return _refuse(None, "bad_sector", "flash_sector must be a sector number")
    if level & 1:
        c.cert_sector[1] = flash_sector
    if level & 2:
        c.cert_sector[2] = flash_sector
    return True


def espconn_secure_cert_req_disable(level):
    c = _settable(level)
    if c is None:
        return False
    if level & 1:
        c.cert_sector[1] = -1
    if level & 2:
        c.cert_sector[2] = -1
    return True


def espconn_secure_set_default_certificate(data):
    """The server's certificate (DER) for espconn_secure_accept."""
    c = _settable(2)
    if c is None or not isinstance(data, (bytes, bytearray)) or not data:
        return False
    c.default_cert = bytes(data)
    return True


def espconn_secure_set_private_key(data):
    """The server's private key (PKCS#1 RSAPrivateKey DER) for espconn_secure_accept."""
    c = _settable(2)
    if c is None or not isinstance(data, (bytes, bytearray)) or not data:
        return False
    c.default_key = bytes(data)
    return True


# -- beyond the SDK, same style --------------------------------------------------
def espconn_secure_set_hostname(e, name):
    """Server name for SNI and for the certificate name check (default: the IP)."""
    if not _ok(e) or e._conn is not None:
        return False
    e._host = name
    return True


def espconn_secure_set_pin(e, sha256):
    """Accept the peer by the SHA-256 of its certificate or of its public key
    (SubjectPublicKeyInfo); with the CA check on, the chain must pass too."""
    if not _ok(e) or e._conn is not None:
        return False
    if sha256 is not None and (not isinstance(sha256, (bytes, bytearray)) or len(sha256) != 32):
        return False
    e._pin = bytes(sha256) if sha256 is not None else None
    return True


def espconn_secure_last_error(e=None):
    """(reason, text) of the last failure on ``e`` (or of the last refused setting), or None."""
    if isinstance(e, espconn):
        return e._err
    return _last


def espconn_secure_get_heap(e):
    """Bytes of heap the connection holds (buffers + TLS), measured when it came up."""
    c = e._conn if isinstance(e, espconn) else None
    return getattr(c, "heap", 0) if c is not None else 0


# -- connections ---------------------------------------------------------------
def espconn_secure_connect(e):
    """Open the one client connection; callbacks follow (ESPCONN_OK or a code)."""
    if not _ok(e):
        return ESPCONN_ARG
    from . import conn

    if conn.client is not None or e._conn is not None:
        _refuse(e, "is_connected", "one secure client connection at a time")
        return ESPCONN_ISCONN
    t = e.proto.tcp
    ip = t.remote_ip
    if not isinstance(ip, (bytes, bytearray)) or len(ip) != 4 or not isinstance(t.remote_port, int) or not 0 < t.remote_port < 65536:
        _refuse(e, "bad_address", "proto.tcp.remote_ip must be 4 bytes and remote_port 1..65535")
        return ESPCONN_ARG
    c = conn.Conn(e)
    # Registered before it starts: a timer tick may step (and even close) it at once.
    e._conn = c
    conn.client = c
    r = c.connect(e._host)
    if r != ESPCONN_OK and conn.client is c:
        e._conn = None
        conn.client = None
    return r


def espconn_secure_accept(e):
    """Listen on proto.tcp.local_port as the one secure server (ESPCONN_OK or a code)."""
    if not _ok(e):
        return ESPCONN_ARG
    from . import conn

    if conn.server is not None:
        _refuse(e, "in_progress", "a secure server is already listening")
        return ESPCONN_INPROGRESS
    from . import server

    if not isinstance(e.proto.tcp.local_port, int) or not 0 < e.proto.tcp.local_port < 65536:
        _refuse(e, "bad_port", "proto.tcp.local_port must be 1..65535")
        return ESPCONN_ARG
    cert, key = conn.default_cert, conn.default_key
    if conn.cert_sector[2] >= 0:
        try:
            cert, key = server.read_cert_bin(conn.cert_sector[2])
        except Exception as ex:
            _refuse(e, getattr(ex, "reason", "no_cert_key"), str(ex))
            return ESPCONN_ARG
    if cert is None or key is None:
        _refuse(e, "no_cert_key", "set the server certificate and key first (set_default_certificate/private_key or cert_req_enable)")
        return ESPCONN_ARG
    lst = server.Listener(e, cert, key)
    e._conn = lst
    conn.server = lst
    r = lst.listen()
    if r != ESPCONN_OK:
        e._conn = None
        conn.server = None
    return r


def espconn_secure_send(e, data, length=None):
    """Send ``length`` bytes (default: all) of data; sentcb fires once all is out."""
    if not _ok(e):
        return ESPCONN_ARG
    c = e._conn
    if c is None or not hasattr(c, "send"):
        _refuse(e, "not_connected", "no open secure connection on this espconn")
        return ESPCONN_CONN
    if length is None:
        length = len(data)
    if not isinstance(length, int) or length < 0 or length > len(data):
        return ESPCONN_ARG
    return c.send(data, length)


espconn_secure_sent = espconn_secure_send  # the SDK's older name


def espconn_secure_disconnect(e):
    """Close the connection; disconcb fires afterwards."""
    if not _ok(e):
        return ESPCONN_ARG
    c = e._conn
    if c is not None and hasattr(c, "child"):  # a server: drop its client
        c = c.child
    if c is None or c.closed:
        return ESPCONN_CONN
    c.close(("disconnect", 0))
    return ESPCONN_OK


def espconn_secure_delete(e):
    """Release a connection, or stop the secure server (no callback)."""
    if not _ok(e):
        return ESPCONN_ARG
    c = e._conn
    if c is None:
        return ESPCONN_ARG
    c.close()
    e.state = ESPCONN_NONE
    return ESPCONN_OK


def espconn_send(e, data, length=None):
    """Plain espconn_send is refused on a secure connection (never mixed in)."""
    _refuse(e, "not_secure_send", "use espconn_secure_send on a secure connection")
    return ESPCONN_ARG


espconn_sent = espconn_send


# -- driving the engine (the background timer does it on a board) -----------------
def espconn_poll():
    """One pass over the open connections; returns how many are open."""
    from . import dispatch

    return dispatch.poll()


def espconn_run(ms=-1):
    """Drive callbacks for ``ms`` milliseconds (ms < 0: until nothing is open)."""
    from . import dispatch

    return dispatch.run(ms)


def espconn_wait(e=None, timeout_ms=-1):
    """Awaitable (asyncio): the next callback on ``e`` (or on any); its name or None."""
    from . import dispatch

    return dispatch.wait(e, timeout_ms)


poll = espconn_poll
run = espconn_run
