"""espconn: Espressif's ESP8266 SDK SSL API (espconn_secure_*) for MicroPython.

Only this module loads at import: the connection path (conn, tap, dispatch)
loads at the first connect, the server role at the first accept, the
verifier for each check and leaves right after.  On an ESP8266 every loaded
function, name and constant costs heap, so the API is kept to few functions.
Every call checks its arguments and answers ESPCONN_ARG (or False) for a bad
one: none raises.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


# The SDK's numbers (espconn.h of the ESP8266 NONOS SDK), public for `from espconn import *`.
ESPCONN_OK = const(0)  # no error
ESPCONN_MEM = const(-1)  # out of memory
ESPCONN_TIMEOUT = const(-3)  # timeout
ESPCONN_RTE = const(-4)  # routing problem (no network)
ESPCONN_INPROGRESS = const(-5)  # operation in progress
ESPCONN_MAXNUM = const(-7)  # total number exceeds the maximum
ESPCONN_ABRT = const(-8)  # connection aborted
ESPCONN_RST = const(-9)  # connection reset
ESPCONN_CLSD = const(-10)  # connection closed
ESPCONN_CONN = const(-11)  # not connected
ESPCONN_ARG = const(-12)  # illegal argument
ESPCONN_IF = const(-14)  # low-level error
ESPCONN_ISCONN = const(-15)  # already connected
ESPCONN_HANDSHAKE = const(-28)  # SSL handshake failed
ESPCONN_SSL_INVALID_DATA = const(-61)  # SSL application data invalid
ESPCONN_INVALID = const(0)  # enum espconn_type
ESPCONN_TCP = const(0x10)
ESPCONN_UDP = const(0x20)
ESPCONN_NONE = const(0)  # enum espconn_state
ESPCONN_WAIT = const(1)
ESPCONN_LISTEN = const(2)
ESPCONN_CONNECT = const(3)
ESPCONN_WRITE = const(4)
ESPCONN_READ = const(5)
ESPCONN_CLOSE = const(6)
ESPCONN_IDLE = const(0)  # espconn_level
ESPCONN_CLIENT = const(1)
ESPCONN_SERVER = const(2)
ESPCONN_BOTH = const(3)

_SECTOR = const(4096)  # SPI_FLASH_SEC_SIZE
_last = None  # (text id, *numbers) of the last refused call with no espconn to hold it
_port = 49152  # espconn_port(): the last local port handed out
# Text ids of its failures (espconn/texts.py)
_T_LEVEL = const(0)
_T_BUSY = const(1)
_T_PAST_FLASH = const(2)
_T_SIZE = const(3)
_T_SERVER_CA = const(4)
_T_SECTOR = const(5)
_T_DER = const(6)
_T_ONE_CLIENT = const(7)
_T_ADDRESS = const(8)
_T_DATA = const(9)
_T_NOT_OPEN = const(10)
_T_PLAIN_SEND = const(11)
_T_MEM_CONN = const(34)  # the first of the no_memory ids


class esp_tcp:
    """The SDK's ``esp_tcp``: ports, addresses (4 bytes each) and the TCP callbacks."""

    def __init__(self):
        self.remote_port = self.local_port = 0
        self.local_ip = self.remote_ip = b"\0\0\0\0"
        self.connect_callback = self.reconnect_callback = self.disconnect_callback = self.write_finish_fn = None


class espconn:
    """The SDK's ``struct espconn``: type, state, proto.tcp, callbacks, link_cnt, reverse.

    ``proto`` is the object itself (the SDK's union { esp_tcp *tcp; esp_udp *udp; }):
    ``conn.proto.tcp`` works as in C, without one more class."""

    def __init__(self):  # (no default arguments: each costs heap at import; set .type as in C)
        self.type = ESPCONN_TCP
        self.state = ESPCONN_NONE
        self.proto = self
        self.tcp = esp_tcp()
        self.udp = self.recv_callback = self.sent_callback = self.reverse = None
        self.link_cnt = 0
        self._conn = None  # conn.Conn / server.Listener while open
        self._err = None  # the last failure: (text id, *numbers), or (reason, text)
        self._errcode = 0  # ESPCONN_* code that went with it
        self._pin = None  # SHA-256 of the accepted certificate or public key
        self._host = None  # espconn_secure_set_hostname()
        self._events = 0  # callbacks fired on this espconn (dispatch.wait)
        self._last = None  # name of the last callback fired


def _ok(e):
    # A usable espconn for a TCP call: the SDK answers ESPCONN_ARG otherwise.
    # (The exact classes are tried first: isinstance() is a slow builtin, and
    # espconn_secure_send runs this once per message.)
    if e.__class__ is not espconn and not isinstance(e, espconn) or e.type != ESPCONN_TCP:
        return False
    try:
        t = e.proto.tcp
    except AttributeError:
        return False
    return t.__class__ is esp_tcp or isinstance(t, esp_tcp)


def _no(err, e):
    # err: (text id, *numbers), see texts.py
    global _last
    _last = err
    if e is not None:
        e._err = _last
    return False


# -- callbacks: ESPCONN_OK, or ESPCONN_ARG for a bad espconn.  The SDK keeps the
# connect/reconnect/disconnect/write-finish callbacks in esp_tcp, recv/sent in
# espconn: so do we.  (Written out: one function object less than a helper.)
def espconn_regist_connectcb(e, cb):
    if not _ok(e):
        return ESPCONN_ARG
    e.proto.tcp.connect_callback = cb
    return ESPCONN_OK


def espconn_regist_reconcb(e, cb):
    if not _ok(e):
        return ESPCONN_ARG
    e.proto.tcp.reconnect_callback = cb
    return ESPCONN_OK


def espconn_regist_disconcb(e, cb):
    if not _ok(e):
        return ESPCONN_ARG
    e.proto.tcp.disconnect_callback = cb
    return ESPCONN_OK


def espconn_regist_write_finish(e, cb):
    if not _ok(e):
        return ESPCONN_ARG
    e.proto.tcp.write_finish_fn = cb
    return ESPCONN_OK


def espconn_regist_recvcb(e, cb):
    if not _ok(e):
        return ESPCONN_ARG
    e.recv_callback = cb
    return ESPCONN_OK


def espconn_regist_sentcb(e, cb):
    if not _ok(e):
        return ESPCONN_ARG
    e.sent_callback = cb
    return ESPCONN_OK


def espconn_port():
    """A free local port number, as the SDK hands out."""
    global _port
    _port = _port + 1 if _port < 65000 else 49153
    return _port


# -- settings: levels 1 (client), 2 (server), 3 (both); before connect/accept --
def _set(level, table, value, sector):
    # table: the name of a per-level list in conn; value stored at the level's indexes.
    from . import conn

    if level not in (1, 2, 3):
        return _no((_T_LEVEL,), None)
    if level & 1 and conn.client is not None or level & 2 and conn.server is not None:
        return _no((_T_BUSY,), None)
    if sector and value >= 0:
        import esp  # type: ignore[import-not-found]

        if not isinstance(value, int) or (value + 1) * _SECTOR > esp.flash_size():
            return _no((_T_PAST_FLASH, value, esp.flash_size()), None)
        del conn.peers[:]  # a store (re)enabled: peers are checked anew
    t = getattr(conn, table)
    if level & 1:
        t[1] = value
    if level & 2:
        t[2] = value
    return True


def espconn_secure_set_size(level, size):
    """SSL buffer size, 1..8192 bytes (default 2048): True, or False (bad level or size, or too late).

    axTLS takes incoming records up to 5115 bytes whatever the size: a larger
    record ends the connection (reconcb ESPCONN_SSL_INVALID_DATA)."""
    if not isinstance(size, int) or not 1 <= size <= 8192:
        return _no((_T_SIZE,), None)
    return _set(level, "size", size, False)


def espconn_secure_get_size(level):
    """The SSL buffer size of ``level`` (the client's for ESPCONN_BOTH), or False."""
    if level not in (1, 2, 3):
        return False
    from . import conn

    return conn.size[2 - (level & 1)]


def espconn_secure_ca_enable(level, flash_sector):
    """Check the peer's chain against the CA store at ``flash_sector`` (ESPCONN_CLIENT only:
    axTLS cannot request a client certificate, so a server cannot check one)."""
    if level in (2, 3):
        return _no((_T_SERVER_CA,), None)
    if not isinstance(flash_sector, int) or flash_sector < 0:
        return _no((_T_SECTOR,), None)
    return _set(level, "ca_sector", flash_sector, True)


def espconn_secure_ca_disable(level):
    return _set(level, "ca_sector", -1, False)


def espconn_secure_cert_req_enable(level, flash_sector):
    """This device's certificate and key from an esp_cert_private_key.bin sector
    (client: sent when the server asks; server: its certificate)."""
    if not isinstance(flash_sector, int) or flash_sector < 0:
        return _no((_T_SECTOR,), None)
    return _set(level, "cert_sector", flash_sector, True)


def espconn_secure_cert_req_disable(level):
    return _set(level, "cert_sector", -1, False)


def espconn_secure_set_default_certificate(data):
    """The server's certificate (DER) for espconn_secure_accept."""
    from . import conn

    if conn.server is not None or not isinstance(data, (bytes, bytearray)) or not data:
        return _no((_T_DER,), None)
    conn.default_cert = bytes(data)  # type: ignore[assignment]
    return True


def espconn_secure_set_private_key(data):
    """The server's private key (PKCS#1 RSAPrivateKey DER) for espconn_secure_accept."""
    from . import conn

    if conn.server is not None or not isinstance(data, (bytes, bytearray)) or not data:
        return _no((_T_DER,), None)
    conn.default_key = bytes(data)  # type: ignore[assignment]
    return True


# -- beyond the SDK, same style --------------------------------------------------
def espconn_secure_set_hostname(e, name):
    """Server name for SNI and for the certificate name check (default: the IP)."""
    if not _ok(e) or e._conn is not None or not (name is None or isinstance(name, str)):
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
    r = e._err if isinstance(e, espconn) else _last
    if r is None or isinstance(r[0], str):
        return r
    try:
        from . import texts  # the texts load only when asked for, and go again

        r = texts.explain(r)
    except MemoryError:  # no heap even for the texts (ids from 34 on are no_memory's)
        r = ("no_memory" if r[0] >= _T_MEM_CONN else "text_%d" % r[0], "no heap to load espconn.texts")
    import sys

    sys.modules.pop(__name__ + ".texts", None)
    globals().pop("texts", None)
    return r


def espconn_secure_get_heap(e):
    """Bytes of heap the open connection holds (buffers + TLS, measured when it came up), never < 0."""
    c = e._conn if isinstance(e, espconn) else None
    return getattr(c, "heap", 0) if c is not None else 0


# -- connections ---------------------------------------------------------------
def espconn_secure_connect(e):
    """Open the one client connection; callbacks follow (ESPCONN_OK or a code)."""
    if not _ok(e):
        return ESPCONN_ARG
    from . import conn

    if conn.client is not None or e._conn is not None:
        _no((_T_ONE_CLIENT,), e)
        return ESPCONN_ISCONN
    t = e.proto.tcp
    ip, port = t.remote_ip, t.remote_port
    if not isinstance(ip, (bytes, bytearray)) or len(ip) != 4 or not isinstance(port, int) or not 0 < port < 65536:
        _no((_T_ADDRESS,), e)
        return ESPCONN_ARG
    c = conn.Conn(e, None)
    # Registered before it starts: a timer tick may step (and even close) it at once.
    e._conn = conn.client = c
    # (no Conn.connect: each method is heap from a ROMFS)
    r = c.open() if c.alloc() else ESPCONN_MEM
    if r != ESPCONN_OK and conn.client is c:
        e._conn = conn.client = None
    return r


def espconn_secure_accept(e):
    """Listen on proto.tcp.local_port as the one secure server (ESPCONN_OK or a code)."""
    if not _ok(e):
        return ESPCONN_ARG
    from . import server

    return server.accept(e)


def espconn_secure_send(e, data, length=None):
    """Send ``length`` bytes (default: all) of ``data``; sentcb fires once all is out.

    Empty data, a non-bytes object or a bad length is ESPCONN_ARG (the SDK's
    sentcb would never come for nothing sent)."""
    try:
        c = e._conn
        ok = c.esp is e  # e's own open connection: e passed _ok() when it connected
    except AttributeError:  # (not open: c None; or not an espconn)
        ok = False
    if not ok and not _ok(e):
        return ESPCONN_ARG
    # (builtins cost a long lookup in this module's full dict: the usual call,
    # all of a bytes object, needs none; b"".__class__ is bytes)
    whole = length is None and data.__class__ is b"".__class__
    if not whole:
        try:
            n = 0 if isinstance(data, str) else len(memoryview(data))
        except TypeError:
            n = 0
        if length is None:
            length = n
        elif not isinstance(length, int):
            length = 0
        if not 0 < length <= n:
            data = b""
        whole = length == n and isinstance(data, bytes)
    if not data:
        _no((_T_DATA,), e)
        return ESPCONN_ARG
    try:
        c.up  # a Conn's (None: not open; a Listener has none)
    except AttributeError:
        _no((_T_NOT_OPEN,), e)
        return ESPCONN_CONN
    return c.send(data, length, whole)


espconn_secure_sent = espconn_secure_send  # the SDK's older name


def espconn_secure_disconnect(e):
    """Close the connection; disconcb fires afterwards.  ESPCONN_ARG if none is open (the SDK's answer)."""
    if not _ok(e):
        return ESPCONN_ARG
    c = e._conn
    if c is not None and hasattr(c, "child"):  # a server: drop its client
        c = c.child
    if c is None or c.closed:
        _no((_T_NOT_OPEN,), e)
        return ESPCONN_ARG
    c.close(("disconnect", 0))
    return ESPCONN_OK


def espconn_secure_delete(e):
    """Release a connection, or stop the secure server (no callback)."""
    if not _ok(e) or e._conn is None:
        return ESPCONN_ARG
    e._conn.close()
    e.state = ESPCONN_NONE
    return ESPCONN_OK


def espconn_send(e, *data, **length):
    """Plain espconn_send(e, data, length) is refused on a secure connection (never mixed in).

    (Any arguments after ``e``: a default argument would cost heap at import.)"""
    _no((_T_PLAIN_SEND,), e if isinstance(e, espconn) else None)
    return ESPCONN_ARG


espconn_sent = espconn_send


# -- driving the engine (the background timer does it on a board) -----------------
def espconn_run(ms):
    """Drive callbacks for ``ms`` milliseconds (ms < 0: until nothing is open; 0: one
    pass over the open connections); returns how many are open (ESPCONN_ARG for a bad ms)."""
    if not isinstance(ms, int):
        return ESPCONN_ARG
    from . import dispatch

    return dispatch.run(ms)


def espconn_wait(e=None, timeout_ms=-1):
    """Awaitable (asyncio): the next callback on ``e`` (or on any); its name or None."""
    from . import dispatch

    return dispatch.wait(e, timeout_ms)

