"""RAM figures of the espconn device package on the MicroPython unix port (figures only).

The package runs as .mpy (compiled as deploy does, by the test harness's
compile_mpy) with the virtual board's device modules; the peer is a CPython
ssl server on 127.0.0.1.  Printed, nothing asserted:
  - import cost of every module (gc.mem_free() before/after, gc.collect() first)
  - an idle espconn object, the heap while the certificate is checked (TLS up
    to the Certificate message plus the verifier), the lowest heap seen between
    engine steps of a verified handshake, the steady state once connected
  - the smallest free heap a verified / unverified 1-byte echo needs
  - .mpy sizes for -march=xtensa (bytecode a real ESP8266 loads into RAM)
The unix port is 64-bit: its objects are about twice an ESP8266's.
Usage: python tools/bench_heap.py
"""

import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_espconn as T  # noqa: E402  (the test harness: PKI, peers, device runner, compile_mpy)
from espssl import deploy  # noqa: E402

MODULES = ("errors", "texts", "dispatch", "tap", "conn", "server", "check", "binfmt", "x509", "castore")  # der/rsa/names: host stubs of x509

IMPORTS = r"""
import sys, gc
import machine_shim, tls_shim
sys.modules["machine"] = machine_shim
sys.modules["tls"] = tls_shim
gc.collect()
a = gc.mem_free()
import espconn
gc.collect()
b = gc.mem_free()
print("@", repr(("espconn (package, from espconn import *)", a - b)))
for m in sys.argv[1].split(","):
    gc.collect()
    a = gc.mem_free()
    __import__("espconn." + m)
    gc.collect()
    print("@", repr(("espconn." + m, a - gc.mem_free())))
"""

# PRELUDE (test_espconn) has imported espconn and the engine already.
CONNECT = r"""
import espconn.conn as C
port = int(sys.argv[1])
espconn_secure_ca_enable(ESPCONN_CLIENT, 0x98)
gc.collect()
base = gc.mem_free()
c = espconn()
c.type = ESPCONN_TCP
c.proto.tcp = esp_tcp()
gc.collect()
out("idle espconn object", base - gc.mem_free())
at_check = []
orig = C.Conn.verify
def verify(self):
    gc.collect()
    at_check.append(gc.mem_free())
    return orig(self)
C.Conn.verify = verify
del c
gc.collect()
base = gc.mem_free()
cl = Client(port, quit_on_connect=False)
low = base
t0 = time.ticks_ms()
while "connect" not in cl.ev and D.items and time.ticks_diff(time.ticks_ms(), t0) < 8000:
    D.run(1)
    gc.collect()
    low = min(low, gc.mem_free())
gc.collect()
out("when the check starts (TLS still up, dropped next)", base - at_check[0] if at_check else -1)
out("lowest between steps of the verified handshake", base - low)
out("steady state after connect (held by the connection)", base - gc.mem_free())
out("verifier modules still loaded", [m for m in ("x509", "castore", "rsa", "der") if "espconn." + m in sys.modules])
espconn_secure_disconnect(cl.c)
cl.wait()
gc.collect()
out("after disconnect (vs before connect)", base - gc.mem_free())
"""

SMALLEST = r"""
port, ca = int(sys.argv[1]), sys.argv[2] == "1"
if ca:
    espconn_secure_ca_enable(ESPCONN_CLIENT, 0x98)
c = Client(port, send=b"x", expect=1).wait()
out("ok", c.ev[:1] == ["connect"] and c.got == b"x")
"""


def smallest(dev, port, ca, lo=16, hi=160):
    """Smallest free heap (KiB, after the board modules) in which a 1-byte echo works."""
    def ok(kib):
        try:
            r = dev.run(SMALLEST, [port, ca], free=kib * 1024)
        except AssertionError:
            return False
        return bool(r and r[0][1])

    if not ok(hi):
        return None
    while hi - lo > 2:  # bisect to 2 KiB
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def main():
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        pki = T.PKI(tmp)
        mpydir = T.compile_mpy(tmp / "lib")
        dev = T.Device(mpydir, T.flash_image(tmp / "flash.bin", pki))
        peer = T.Peer(T.server_context(*pki.files("good")))
        try:
            script = tmp / "imports.py"
            script.write_text(IMPORTS)
            p = subprocess.run(
                [dev.exe, "-X", "heapsize=" + T.HEAP, str(script), ",".join(MODULES)],
                capture_output=True, text=True, env=dev.env(), check=True,
            )
            xt = tmp / "xtensa"
            deploy.compile_package(deploy._mpy_cross_cmd() + ["-march=xtensa"], T.FIRMWARE, xt)
            sizes = {f.stem: f.stat().st_size for f in xt.glob("*.mpy")}
            print("espconn heap figures (MicroPython unix port, 64-bit objects: an ESP8266 needs about half)")
            print("%-52s %10s %12s" % ("module", "import B", "xtensa .mpy"))
            for name, cost in T.results(p.stdout):
                stem = name.split(".")[-1] if "." in name else "__init__"
                print("%-52s %10d %12s" % (name, cost, sizes.get(stem, "")))
            print("%-52s %10s %12d" % ("total .mpy (xtensa)", "", sum(sizes.values())))
            print()
            for row in dev.run(CONNECT, [peer.port]):
                print("%-52s %10s" % (row[0], row[1]))
            for ca in ("0", "1"):
                kib = smallest(dev, peer.port, ca)
                print("%-52s %10s" % (
                    "smallest free heap, %s 1-byte echo" % ("CA-verified" if ca == "1" else "unverified"),
                    "%d KiB" % kib if kib else "> 160 KiB"))
        finally:
            peer.close()


if __name__ == "__main__":
    main()
