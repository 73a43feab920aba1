"""Host-side TLS peers for the loopback suite: CPython ``ssl`` set up as an axTLS peer needs.

axTLS (the ESP8266's TLS) speaks TLS 1.2 at most, RSA key exchange only
(AES128/256-CBC with SHA-1 or SHA-256), RSA certificates, and needs
OpenSSL 3's ``OP_LEGACY_SERVER_CONNECT`` when OpenSSL is the client of an
axTLS server (no secure-renegotiation extension).  ``@SECLEVEL=0`` lets
1024-bit keys and SHA-1 signatures through, as older device setups use.

Each peer runs one connection in a thread and records what happened, so a
test can compare what the board saw with what the host saw.
"""

import os
import socket
import ssl
import threading
import time

# RSA key exchange suites axTLS offers (OpenSSL names), then the security level.
AXTLS_CIPHERS = "AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256:@SECLEVEL=0"


def _tls12(ctx):
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(AXTLS_CIPHERS)
    return ctx


def server_context(cert_file, key_file):
    """A server the board connects to: TLS 1.2, RSA key exchange, low security level."""
    ctx = _tls12(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def client_context(ca_file=None, hostname_check=True):
    """A client for the board's server; OP_LEGACY_SERVER_CONNECT as axTLS servers need."""
    ctx = _tls12(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
    if ca_file:
        ctx.load_verify_locations(str(ca_file))
        ctx.check_hostname = hostname_check
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Peer:
    """Runs ``self._serve`` in a thread; ``.result`` holds what the host saw."""

    timeout = 30.0

    def __init__(self):
        self.result = {"handshake": None, "received": b"", "error": None, "cipher": None, "closed_by": None}
        self._thread = None
        self.done = threading.Event()

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        try:
            self._serve()
        except Exception as e:  # recorded for the test to assert on
            self.result["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            self.done.set()

    def _handshake(self, sock, **wrap):
        """``self.ctx.wrap_socket(sock, **wrap)``, its time and cipher recorded; None
        (the error recorded, SOCK closed) when the handshake fails."""
        t0 = time.monotonic()
        try:
            tls = self.ctx.wrap_socket(sock, **wrap)
        except (ssl.SSLError, OSError) as e:
            self.result["error"] = "handshake: %s" % e
            sock.close()
            return None
        self.result["handshake"] = time.monotonic() - t0
        self.result["cipher"] = tls.cipher()[0]
        return tls

    def join(self, timeout=None):
        self.done.wait(self.timeout if timeout is None else timeout)
        return self.result


class TLSServer(Peer):
    """TLS server on HOST:0 (``.port`` is the port picked) that talks to the board once.

    A board checking certificates connects twice (espconn's conn.py): the first
    connection ends after the server's Certificate message, which the board
    checks with TLS unloaded; the second must show the same certificate.  So
    the server keeps accepting until one handshake completes, or until
    ``join`` (the board is done) stops it; ``result["connections"]`` counts them.

    mode: "echo" (send back what arrives until the board closes),
          "send" (send ``payload`` in one write: one TLS record, then read until close),
          "reset_handshake" (accept TCP, read the ClientHello, close with RST),
          "reset_record" (handshake, then send half a record and RST).
    """

    def __init__(self, ctx, host="127.0.0.1", mode="echo", payload=b""):
        super().__init__()
        self.ctx = ctx
        self.mode = mode
        self.payload = payload
        self.result["connections"] = 0
        self._stop = threading.Event()
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.1)  # to look at _stop between accepts
        self.port = self.sock.getsockname()[1]

    def join(self, timeout=None):
        self._stop.set()  # the board has finished: no connection is coming any more
        return super().join(timeout)

    def _serve(self):
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    conn, _addr = self.sock.accept()
                except socket.timeout:
                    continue
                self.result["connections"] += 1
                if self._serve_one(conn):
                    return
        finally:
            self.sock.close()

    def _serve_one(self, conn):
        """One connection; False when its handshake ended early (the board may come back)."""
        conn.settimeout(self.timeout)
        if self.mode == "reset_handshake":
            conn.recv(4096)  # the ClientHello
            rst(conn)
            self.result["closed_by"] = "host-rst"
            return True
        tls = self._handshake(conn, server_side=True)
        if tls is None:
            return False
        self.result["error"] = None  # an earlier, cut-short connection is not this one's error
        if self.mode == "reset_record":
            # A record header promising 1000 bytes, then only 10 of them, then RST.
            tls.write(b"x")  # one good record first: the board is past the handshake
            time.sleep(0.5)
            # Forge the cut record on the same TCP socket, under the TLS layer.
            raw = socket.socket(fileno=os.dup(tls.fileno()))
            raw.sendall(b"\x17\x03\x03\x03\xe8" + b"\0" * 10)
            rst(raw)
            tls.close()
            self.result["closed_by"] = "host-rst"
            return True
        if self.mode == "send":
            tls.write(self.payload)
        self._pump(tls)
        return True

    def _pump(self, tls):
        got = bytearray()
        while True:
            try:
                data = tls.recv(16384)
            except (ssl.SSLError, OSError) as e:
                self.result["error"] = "recv: %s" % e
                break
            if not data:
                self.result["closed_by"] = "board"
                break
            got += data
            if self.mode == "echo":
                tls.sendall(data)
        self.result["received"] = bytes(got)
        try:
            tls.close()
        except OSError:
            pass


class TLSClient(Peer):
    """Connects to the board's TLS server at HOST:PORT, sends ``payload``, reads ``expect`` bytes."""

    def __init__(self, ctx, host, port, payload=b"", expect=0, server_hostname=None, connect_timeout=30.0):
        super().__init__()
        self.ctx = ctx
        self.host = host
        self.port = port
        self.payload = payload
        self.expect = expect
        self.server_hostname = server_hostname
        self.connect_timeout = connect_timeout

    def _serve(self):
        deadline = time.monotonic() + self.connect_timeout
        while True:  # the board's server may still be starting
            try:
                raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        tls = self._handshake(raw, server_hostname=self.server_hostname)
        if tls is None:
            return
        if self.payload:
            tls.sendall(self.payload)
        got = bytearray()
        while len(got) < self.expect:
            data = tls.recv(16384)
            if not data:
                break
            got += data
        self.result["received"] = bytes(got)
        tls.close()
        self.result["closed_by"] = "host"


def rst(sock):
    """Close with a TCP RST (SO_LINGER 0), as a crashed or reset peer would."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
