"""Benchmark of the espconn device code on the MicroPython unix port (figures only).

Runs the firmware as .mpy with the virtual board's device modules (restricted
tls shim, machine.Timer, esp on a flash image) against CPython TLS peers on
127.0.0.1 and prints:
  - verified connect time: espconn with the CA check vs the unix port's native
    tls with CERT_REQUIRED (mbedTLS verifying in C), ratio
  - echo throughput: through espconn callbacks vs a bare tls socket loop, ratio
  - heap: after `from espconn import *` (.mpy), after the connection modules
    load, held per open connection
Nothing is asserted.  Usage: python tools/bench_espconn.py [--rounds N]
"""

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_espconn as T  # noqa: E402  (the test harness: PKI, peers, device runner)

NATIVE = r"""
import socket, tls, time, sys
port, n, ca = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
ctx.load_verify_locations(ca)  # DER of the CA
addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
t0 = time.ticks_us()
for i in range(n):
    s = socket.socket()
    s.connect(addr)
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    t.close()
print("@", repr(("native", time.ticks_diff(time.ticks_us(), t0) / n)))
"""

OURS = r"""
port, n, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if ca:
    espconn_secure_ca_enable(ESPCONN_CLIENT, 0x98)
ok = 0
t0 = time.ticks_us()
for i in range(n):
    c = Client(port, quit_on_connect=True).wait()
    ok += c.ev == ["connect", "discon"]
out("ours", time.ticks_diff(time.ticks_us(), t0) / n, ok, ca)
"""

ECHO = r"""
port, total = int(sys.argv[1]), int(sys.argv[2])
chunk = bytes(1024)
# espconn: send 1024 bytes, wait for their echo, again (callbacks only)
st = {"got": 0, "sent": 0}
def on_connect(a):
    st["t0"] = time.ticks_us()
    espconn_secure_send(a, chunk)
def on_recv(a, d, n):
    st["got"] += n
    if st["got"] >= total:
        st["t1"] = time.ticks_us()
        espconn_secure_disconnect(a)
    elif st["got"] % 1024 == 0:
        espconn_secure_send(a, chunk)
c = Client(port)
espconn_regist_connectcb(c.c, on_connect)
espconn_regist_recvcb(c.c, on_recv)
c.wait(60000)
out("echo_ours", total * 1e6 / time.ticks_diff(st["t1"], st["t0"]))
gc.collect()
# bare: the same exchange on a blocking tls socket (the same tls shim)
import socket, tls
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
t = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT).wrap_socket(s)
buf = bytearray(1024)
got = 0
t0 = time.ticks_us()
while got < total:
    t.write(chunk)
    k = 0
    while k < 1024:
        k += t.readinto(memoryview(buf)[k:])
    got += 1024
out("echo_bare", total * 1e6 / time.ticks_diff(time.ticks_us(), t0))
t.close()
"""

HEAP = r"""
import sys as _s
port = int(sys.argv[1])
gc.collect()
out("after_prelude_import", gc.mem_free())
c = Client(port, quit_on_connect=True).wait()
gc.collect()
out("after_first_connection", gc.mem_free(), c.heap)
"""

SMALLEST = r"""
port, ca = int(sys.argv[1]), sys.argv[2] == "1"
if ca:
    espconn_secure_ca_enable(ESPCONN_CLIENT, 0x98)
c = Client(port, send=b"x", expect=1).wait()
out("ok", c.ev[:1] == ["connect"] and c.got == b"x")
"""

HEAP_IMPORT = r"""
import sys, gc
import machine_shim, tls_shim
sys.modules["machine"] = machine_shim
sys.modules["tls"] = tls_shim
gc.collect()
a = gc.mem_free()
from espconn import *
gc.collect()
b = gc.mem_free()
import espconn.conn, espconn.tap, espconn.dispatch
gc.collect()
c = gc.mem_free()
try:
    import espconn.x509, espconn.castore
except ImportError:
    pass
gc.collect()
d = gc.mem_free()
print("@", repr(("import", a - b, b - c, c - d)))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="connections per connect-time figure")
    ap.add_argument("--bytes", type=int, default=256 * 1024, help="bytes echoed per throughput figure")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        pki = T.PKI(tmp, bits=2048)  # mbedTLS's default profile refuses RSA-1024
        mpydir = T.compile_mpy(tmp / "lib")
        dev = T.Device(mpydir, T.flash_image(tmp / "flash.bin", pki))
        peer = T.Peer(T.server_context(*pki.files("good")))
        ca_pem = tmp / "ca.der"
        ca_pem.write_bytes(T.der(pki.ca))
        have_ca = (T.FIRMWARE / "castore.py").exists()

        import subprocess

        script = tmp / "native.py"
        script.write_text(NATIVE)
        env = dev.env()
        env["MICROPYPATH"] = ".frozen"
        p = subprocess.run(
            [dev.exe, "-X", "heapsize=" + T.HEAP, str(script), str(peer.port), str(args.rounds), str(ca_pem)],
            capture_output=True, text=True, env=env,
        )
        if p.returncode:
            sys.exit("native tls run failed: " + p.stderr.strip().splitlines()[-1])
        native = T.results(p.stdout)[0][1]
        ours = dev.run(OURS, [peer.port, args.rounds, "1" if have_ca else "0"])[0]
        print("connect, native tls CERT_REQUIRED (unix port, mbedTLS in C): %8.1f ms" % (native / 1000))
        print(
            "connect, espconn %s:%s %8.1f ms   ratio %.2f"
            % ("with CA check (Python verifier)" if have_ca else "WITHOUT CA check (castore missing)",
               " " * (10 if have_ca else 6), ours[1] / 1000, ours[1] / native)
        )
        echo = {r[0]: r[1] for r in dev.run(ECHO, [peer.port, args.bytes])}
        print("echo, espconn callbacks (1 KiB ping-pong):  %8.1f KiB/s" % (echo["echo_ours"] / 1024))
        print("echo, bare tls socket loop:                 %8.1f KiB/s   ratio %.2f" % (echo["echo_bare"] / 1024, echo["echo_ours"] / echo["echo_bare"]))
        env = dev.env()
        script = tmp / "imp.py"
        script.write_text(HEAP_IMPORT)
        p = subprocess.run([dev.exe, "-X", "heapsize=" + T.HEAP, str(script)], capture_output=True, text=True, env=env, check=True)
        imp = T.results(p.stdout)[0]
        print("heap (unix port, 64-bit objects; an ESP8266 needs roughly half):")
        print("  from espconn import * (.mpy):             %6d bytes" % imp[1])
        print("  connection modules (conn, tap, dispatch): %6d bytes" % imp[2])
        print("  verifier modules (x509, castore, ...):    %6d bytes" % imp[3])
        heap = {r[0]: r[1:] for r in dev.run(HEAP, [peer.port])}
        print("  held by one open connection (TLS included, tls shim sized as axTLS): %d bytes" % heap["after_first_connection"][1])
        for ca in ("0", "1") if have_ca else ("0",):
            smallest = None
            for kib in range(40, 161, 4):
                try:
                    r = dev.run(SMALLEST, [peer.port, ca], free=kib * 1024)
                except AssertionError:
                    continue
                if r and r[0][1]:
                    smallest = kib
                    break
            print(
                "  smallest free heap (after the board modules) for one %s echo: %s"
                % ("CA-verified" if ca == "1" else "unverified", "%d KiB" % smallest if smallest else "more than 160 KiB")
            )
        peer.close()


if __name__ == "__main__":
    main()
