"""Heap an ESP8266 needs for each TLS flow, measured on one MicroPython binary (figures only).

For each flow of issue 9's table (plain ``tls`` echo; espconn without a CA
check; espconn CA-verified; a CA-verified chain leaf + intermediate), with
the package as ``.mpy`` in a /lib-like directory, from a ROMFS image mounted
with ``vfs.VfsRom`` and frozen (when ``--frozen-micropython`` is given):

  - the smallest ``-X heapsize`` (1 KiB steps: bisect, then N runs in N)
  - the free heap at the flow's start at that size (``gc.mem_free()`` once
    the board's modules are loaded, before the program imports anything):
    the figure to hold against an ESP8266's ~30-35 KB free after boot
  - every failing run classified: clean (ESPCONN_MEM, reconnect callback,
    MemoryError) or crash (the process died on a signal, as axTLS does out of
    heap); crashes below the threshold are bugs

and also: ``import espconn`` heap cost per form, per-module ``.mpy`` sizes
(mpy-cross bytecode and ``-march=xtensa``), verified connect time over
unverified, echo through callbacks over a bare ``tls`` loop.

The client is written as a user writes it with the SDK API (callbacks,
espconn_secure_ca_enable, connect, send 64 bytes, get the echo, disconnect);
the peer is CPython ``ssl`` on 127.0.0.1 (RSA-2048, espssl.hil.peers); the CA
store is an esp_ca_cert.bin (espssl.cabin) in a flash image read through the
virtual board's ``esp`` shim.  On a mbedTLS port (the 64-bit one the project
installs) the board's ``tls`` shim stands in for axTLS; an axTLS binary (e.g.
an ESP8266-like 32-bit build) is used as it is.  A ROMFS image sits in the GC
heap here (the unix port has no flash to map), so it is loaded before the
start figure is taken and its size is printed beside the heap size.

Usage:
  python tools/bench_ram.py [--micropython PATH] [--frozen-micropython PATH]
      [--runs N] [--flows plain,nocheck,verified,chain] [--forms mpy,romfs,frozen]
      [--src firmware/espconn]
"""

import argparse
import contextlib
import io
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pki as P  # noqa: E402  (the tests' PKI: RSA-2048 root, intermediate, leaves)
import test_espconn as T  # noqa: E402  (device modules, peers, flash layout, results)
from espssl import cabin, certs, deploy  # noqa: E402
from espssl.hil.peers import server_context  # noqa: E402
from espssl.vboard.board import micropython_path  # noqa: E402

FLOWS = ("plain", "nocheck", "verified", "chain")
FORMS = ("mpy", "romfs", "frozen")
MSG_LEN = 64
TIMEOUT = 60

# Board modules first (built into an ESP8266: not the program's heap), then the
# start figure, then the program.  argv: form, romfs image, flow, port, extra.
BOOT = r"""
import sys, gc
import machine_shim
sys.modules["machine"] = machine_shim
import socket_shim  # a board's socket: 127.0.0.1 only, TCP_NODELAY
sys.modules["socket"] = socket_shim
import tls
if hasattr(tls, "MBEDTLS_VERSION"):
    import tls_shim
    sys.modules["tls"] = tls_shim
import esp, socket, select, time
form, flow, port, extra = sys.argv[1], sys.argv[3], int(sys.argv[4]), sys.argv[5]
if form == "romfs":
    import os, vfs
    _img = bytearray(os.stat(sys.argv[2])[6])  # one block, as flash would be one region
    with open(sys.argv[2], "rb") as f:
        f.readinto(_img)
    vfs.mount(vfs.VfsRom(_img), "/rom")
    sys.path.insert(0, "/rom")
gc.collect()
print("@", repr(("start", gc.mem_free())))

def out(*a):
    print("@", repr(a))
"""

# A bare TLS client: connect, 64-byte echo (``extra`` rounds of it timed), close.
PLAIN = r"""
import tls
msg = bytes(range(64))
tc = time.ticks_us()
s = socket.socket()
if hasattr(socket, "TCP_NODELAY"):  # the same TCP as espconn's (conn.nodelay)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_NONE
t = ctx.wrap_socket(s)
tc = time.ticks_diff(time.ticks_us(), tc)
buf = bytearray(64)
mv = memoryview(buf)
rounds = int(extra) or 1
t0 = time.ticks_us()
for _ in range(rounds):
    t.write(msg)
    n = 0
    while n < 64:
        k = t.readinto(mv[n:])
        if not k:
            break
        n += k
    if n < 64:
        break
us = time.ticks_diff(time.ticks_us(), t0)
t.close()
out("ok" if buf == msg else "short", us, tc)
"""

# The SDK-style client.  extra: "0"/"1" CA check : echo rounds [: connections, one
# after the other in this boot; the last one's connect time is reported too].
ESPCONN = r"""
from espconn import *
parts = extra.split(":")
verify, rounds = parts[0], int(parts[1]) or 1
conns = int(parts[2]) if len(parts) > 2 else 1
msg = bytes(range(64))
got = bytearray()
st = {}

def on_connect(c):
    st["t_conn"] = time.ticks_us()
    espconn_secure_send(c, msg)

def on_recv(c, d, n):
    got.extend(d)
    if len(got) >= 64:
        st["rounds"] += 1
        if st["rounds"] >= rounds or got[:64] != msg:
            espconn_secure_disconnect(c)
        else:
            got[:] = b""
            espconn_secure_send(c, msg)

def on_recon(c, err):
    st["recon"] = (err, espconn_secure_last_error(c))

def on_discon(c):
    st["t_end"] = time.ticks_us()
    st["discon"] = True

if verify == "1":
    espconn_secure_ca_enable(ESPCONN_CLIENT, 0x98)
times = []
for k in range(conns):
    st.clear()
    st["rounds"] = 0
    got[:] = b""
    conn = espconn()
    conn.type = ESPCONN_TCP
    conn.state = ESPCONN_NONE
    conn.proto.tcp = tcp = esp_tcp()
    tcp.remote_ip = bytes((127, 0, 0, 1))
    tcp.remote_port = port
    tcp.local_port = espconn_port()
    espconn_regist_connectcb(conn, on_connect)
    espconn_regist_recvcb(conn, on_recv)
    espconn_regist_reconcb(conn, on_recon)
    espconn_regist_disconcb(conn, on_discon)
    t0 = time.ticks_us()
    r = espconn_secure_connect(conn)
    if r != 0:
        out("refused", r, espconn_secure_last_error(conn))
        break
    t_end = time.ticks_add(time.ticks_ms(), 30000)
    while "discon" not in st and "recon" not in st and time.ticks_diff(t_end, time.ticks_ms()) > 0:
        espconn_run(20)
    if "recon" in st:
        out("recon", st["recon"])
        break
    elif "t_conn" in st and st["rounds"] >= rounds and got[:64] == msg:
        times.append((time.ticks_diff(st["t_conn"], t0), time.ticks_diff(st["t_end"], st["t_conn"])))
    else:
        out("short", st["rounds"], len(got))
        break
if len(times) == conns:
    out("ok", times[0][0], times[0][1], times[-1][0])
"""

IMPORT_COST = r"""
gc.collect()
a = gc.mem_free()
import espconn
gc.collect()
b = gc.mem_free()
for m in extra.split(","):
    __import__("espconn." + m)
gc.collect()
out("import", a - b, a - gc.mem_free())
"""


def classify(proc):
    """('ok'|'clean'|'crash'|'other', detail) for one finished device run."""
    if proc is None:
        return "other", "timeout"
    rows = T.results(proc.stdout)
    if not rows or rows[0][0] != "start":
        return "setup", "the board's modules did not fit"  # not the flow's failure
    if proc.returncode < 0:
        return "crash", "signal %d" % -proc.returncode
    if proc.returncode != 0:
        if "MemoryError" in proc.stdout + proc.stderr:  # the unix port prints tracebacks to stdout
            return "clean", "MemoryError"
        return "other", ((proc.stdout + proc.stderr).strip().splitlines() or ["exit %d" % proc.returncode])[-1][:100]
    last = rows[-1] if rows else ("nothing",)
    if last[0] == "ok":
        return "ok", last
    if last[0] == "refused":  # ("refused", code, (reason, text))
        return "clean", "connect %d %s" % (last[1], _reason(last[2]))
    if last[0] == "recon":  # ("recon", (err, (reason, text)))
        return "clean", "reconnect cb %d %s" % (last[1][0], _reason(last[1][1]))
    return "other", repr(last)[:100]


def _reason(e):
    return e[0] if isinstance(e, tuple) and e else repr(e)


class Bench:
    def __init__(self, exe, tmp, src, runs, frozen_exe=None):
        self.exe, self.frozen_exe, self.runs, self.src = exe, frozen_exe, runs, src
        self.tmp = tmp
        self.dev = tmp / "dev"  # the board's modules (built in on an ESP8266)
        self.lib = tmp / "lib"  # the deployed package
        self.dev.mkdir(parents=True)
        for n in ("esp", "machine_shim", "tls_shim", "socket_shim"):
            deploy.compile_module(None, T.DEVICE / (n + ".py"), self.dev / (n + ".mpy"), n + ".py")
        deploy.compile_package(None, src, self.lib / "espconn")
        with contextlib.redirect_stdout(io.StringIO()):
            from mpremote.romfs import make_romfs

            self.romfs = tmp / "espconn.romfs"
            self.romfs.write_bytes(make_romfs(str(self.lib), mpy_cross=False))
        self.scripts = {}
        for name, body in (("plain", PLAIN), ("espconn", ESPCONN), ("import", IMPORT_COST)):
            p = tmp / (name + "_prog.py")
            p.write_text(BOOT + body)
            self.scripts[name] = p
        self._pki()

    def _pki(self):
        root = P.CA("espssl bench root")
        inter = root.child_ca("espssl bench intermediate")
        self.leaf = root.issue("127.0.0.1")
        self.chain_leaf = inter.issue("127.0.0.1")
        files = {}
        for name, cert, extra in (("leaf", self.leaf, b""), ("chain", self.chain_leaf, inter.pem)):
            c, k = self.tmp / (name + ".pem"), self.tmp / (name + ".key.pem")
            c.write_bytes(cert.pem + extra)
            k.write_bytes(certs.key_pem(cert.key))
            files[name] = (str(c), str(k))
        ca = root.write(self.tmp / "root.der")
        img = bytearray(b"\xff" * T.FLASH_SIZE)
        store = cabin.build_ca_bin([str(ca)])
        img[T.CA_SECTOR * 4096 : T.CA_SECTOR * 4096 + len(store)] = store
        self.flash = self.tmp / "flash.bin"
        self.flash.write_bytes(bytes(img))
        self.peers = {n: T.Peer(server_context(*f)) for n, f in files.items()}

    def close(self):
        for p in self.peers.values():
            p.close()

    def env(self, form):
        env = dict(os.environ)
        path = [str(self.dev)] + ([str(self.lib)] if form == "mpy" else []) + [".frozen"]
        env["MICROPYPATH"] = os.pathsep.join(path)
        env["ESPSSL_VBOARD_FLASH"] = str(self.flash)
        env["ESPSSL_VBOARD_FLASH_SIZE"] = str(T.FLASH_SIZE)
        return env

    def run(self, flow, form, heap_kib, extra_rounds=0, conns=1):
        """One device run of FLOW in FORM at -X heapsize=HEAP_KIB K: (class, detail, start);
        ``conns`` connections one after the other (espconn flows)."""
        exe = self.frozen_exe if form == "frozen" else self.exe
        peer = self.peers["chain" if flow == "chain" else "leaf"]
        if flow == "plain":
            script, extra = self.scripts["plain"], str(extra_rounds)
        elif flow == "import":
            script, extra = self.scripts["import"], ",".join(sorted(m.stem for m in (self.lib / "espconn").glob("*.mpy")
                                                                    if m.stem != "__init__"))
        else:
            script = self.scripts["espconn"]
            extra = "%d:%d:%d" % (flow != "nocheck", extra_rounds, conns)
        cmd = [exe, "-X", "heapsize=%dK" % heap_kib, str(script), form, str(self.romfs), flow, str(peer.port), extra]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env(form), timeout=TIMEOUT,
                                  cwd=str(self.tmp))
        except subprocess.TimeoutExpired:
            return "other", "timeout", None
        rows = T.results(proc.stdout)
        start = rows[0][1] if rows and rows[0][0] == "start" else None
        if flow == "import":
            return ("ok", rows[-1], start) if proc.returncode == 0 and rows and rows[-1][0] == "import" else (
                "other", (proc.stdout + proc.stderr)[-200:], start)
        kind, detail = classify(proc)
        return kind, detail, start

    def threshold(self, flow, form, lo, hi, below, below_runs=1):
        """Smallest heap (KiB) passing self.runs runs in a row, its start figure, and the
        failures seen below it: {'clean': n, 'crash': n, 'other': n, 'details': set}."""
        seen = {"clean": 0, "crash": 0, "other": 0, "details": set(), "flaky": []}
        tried = {}

        def once(kib):
            kind, detail, start = self.run(flow, form, kib)
            tried.setdefault(kib, []).append((kind, detail, start))
            return kind == "ok"

        top = hi
        if not once(hi):
            return None, None, seen, tried
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if once(mid):
                hi = mid
            else:
                lo = mid
        size = hi
        while True:  # confirm: N runs in N, else one KiB more
            if all(once(size) for _ in range(self.runs - len(tried.get(size, [])))):
                break
            size += 1
            if size > top:  # flaky even at the largest heap tried
                break
        if size > top:  # what kept failing where a smaller heap had passed once
            for kib, outcomes in tried.items():
                if kib >= hi:
                    seen["flaky"] += [(kib, o[0], o[1]) for o in outcomes if o[0] != "ok"]
            return None, None, seen, tried
        for kib in range(size - 1, max(size - 1 - below, 0), -1):  # the sizes just below
            for _ in range(below_runs - len(tried.get(kib, []))):
                once(kib)
        crash_at = {}
        for kib, outcomes in sorted(tried.items()):
            if kib < size:
                for kind, detail, _ in outcomes:
                    if kind not in ("ok", "setup"):
                        seen[kind] += 1
                    if kind == "crash":
                        crash_at.setdefault(detail, []).append("%dK" % kib)
                    elif kind not in ("ok", "setup"):
                        seen["details"].add("%s: %s" % (kind, detail))
        for detail, sizes in crash_at.items():
            seen["details"].add("crash: %s at %s" % (detail, ",".join(sorted(set(sizes), key=lambda k: int(k[:-1])))))
        start = next((s for k, d, s in tried[size] if s is not None), None)
        return size, start, seen, tried


def mpy_sizes(src):
    """{module: (bytecode .mpy bytes, xtensa .mpy bytes)}."""
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        deploy.compile_package(None, src, d / "bc")
        deploy.compile_package(deploy._mpy_cross_cmd() + ["-march=xtensa"], src, d / "xt")
        return {f.stem: (f.stat().st_size, (d / "xt" / f.name).stat().st_size) for f in sorted((d / "bc").glob("*.mpy"))}


def describe(exe):
    p = subprocess.run([exe, "-c", "import sys, tls; print(sys.maxsize > 2**32, hasattr(tls, 'MBEDTLS_VERSION'))"],
                       capture_output=True, text=True, timeout=30)
    bits64, mbed = (p.stdout.split() + ["?", "?"])[:2]
    return "%s-bit, %s" % ("64" if bits64 == "True" else "32", "mbedTLS (tls shim as axTLS)" if mbed == "True" else "axTLS")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints figures; asserts nothing.  Peers listen on 127.0.0.1 only.")
    ap.add_argument("--micropython", default=os.environ.get("ESPSSL_MICROPYTHON") or micropython_path(),
                    help="MicroPython unix binary (default: $ESPSSL_MICROPYTHON, else the project's 64-bit port)")
    ap.add_argument("--frozen-micropython", help="a binary with the espconn package frozen (adds the frozen form)")
    ap.add_argument("--runs", type=int, default=20, help="runs that must all pass at the threshold (default 20)")
    ap.add_argument("--flows", default=",".join(FLOWS), help="comma list of " + ",".join(FLOWS))
    ap.add_argument("--forms", default=",".join(FORMS),
                    help="comma list of " + ",".join(FORMS) + " (frozen only with --frozen-micropython)")
    ap.add_argument("--src", type=pathlib.Path, default=T.FIRMWARE, help="espconn package source (default firmware/espconn)")
    ap.add_argument("--below", type=int, default=8, help="sizes just below each threshold also tried (default 8)")
    ap.add_argument("--below-runs", type=int, default=3, help="runs at each of those sizes (default 3)")
    ap.add_argument("--max-heap", type=int, help="largest heap tried, KiB (default 160 on 32 bits, 400 on 64)")
    ap.add_argument("--timing-runs", type=int, default=10, help="runs of each timing figure (default 10)")
    ap.add_argument("--timing-heap", type=int, help="heap of the timing runs, KiB (default: the largest heap tried)")
    a = ap.parse_args(argv)
    if not a.micropython or not pathlib.Path(a.micropython).exists():
        ap.error("no MicroPython binary: give --micropython PATH")
    flows = [f for f in a.flows.split(",") if f]
    forms = [f for f in a.forms.split(",") if f]
    for f in flows:
        if f not in FLOWS:
            ap.error("unknown flow %r (choose from %s)" % (f, ", ".join(FLOWS)))
    for f in forms:
        if f not in FORMS:
            ap.error("unknown form %r (choose from %s)" % (f, ", ".join(FORMS)))
    if not (a.src / "__init__.py").exists():
        ap.error("--src %s holds no espconn package" % a.src)
    if "frozen" in forms and not a.frozen_micropython:
        if a.forms != ",".join(FORMS):
            ap.error("the frozen form needs --frozen-micropython PATH")
        forms.remove("frozen")
    if not forms:
        ap.error("no form to measure")
    kind = describe(a.micropython)
    wide = kind.startswith("64")
    runs = a.runs
    hi = a.max_heap or (400 if wide else 160)
    print("bench_ram: %s (%s)" % (a.micropython, kind))
    if a.frozen_micropython:
        print("           frozen: %s (%s)" % (a.frozen_micropython, describe(a.frozen_micropython)))
    print("           package %s; %d runs in %d at each threshold" % (a.src, runs, runs))
    if wide:
        print("           64-bit objects are about twice an ESP8266's: heap figures here are not a board's")
    sys.stdout.flush()

    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(a.micropython, pathlib.Path(tmp), a.src, runs, a.frozen_micropython)
        try:
            report(b, flows, forms, hi, a)
        finally:
            b.close()


def report(b, flows, forms, hi, a):
    romfs_kib = b.romfs.stat().st_size / 1024
    print()
    print("smallest -X heapsize (1 KiB steps) and free heap at the flow's start at that size")
    print("%-34s %9s %12s %7s %7s %7s  %s" % ("flow", "heapsize", "start free", "clean", "crash", "other", "failures below"))
    for flow in flows:
        for form in (["-"] if flow == "plain" else forms):
            label = "plain tls echo" if flow == "plain" else "%s, %s" % (flow, form)
            t0 = time.monotonic()
            size, start, seen, tried = b.threshold(flow, form if form != "-" else "mpy", 4, hi, a.below, a.below_runs)
            if size is None:
                what = next((o for o in tried.get(hi, []) if o[0] != "ok"), ("flaky", "see below", None))
                print("%-34s %9s %12s  (not %d in %d at %d K: %s: %s)" % (
                    label, "> %dK" % hi, "-", b.runs, b.runs, hi, what[0], what[1]))
            else:
                print("%-34s %8dK %10.1f KB %7d %7d %7d  %s" % (
                    label + (" (+%.1f KiB image)" % romfs_kib if form == "romfs" else ""),
                    size, (start or 0) / 1000, seen["clean"], seen["crash"], seen["other"],
                    "; ".join(sorted(seen["details"], key=lambda d: (d.split(":")[0] != "crash", d.split(":")[0] != "other", d)))[:200]))
            print("%-34s %9s %12s  (%d runs, %.1f s)" % ("", "", "", sum(len(v) for v in tried.values()),
                                                          time.monotonic() - t0))
            for kib, kind, detail in seen["flaky"][:5]:
                print("%-34s %9s %12s  flaky: %s at %dK (a smaller heap had passed): %s" % ("", "", "", kind, kib, detail))
            sys.stdout.flush()

    print()
    print("import cost (heap, gc.collect() around), at %d K" % hi)
    for form in forms:
        kind, detail, _ = b.run("import", form, hi)
        if kind == "ok":
            print("  %-8s import espconn %6d B   all modules %6d B" % (form, detail[1], detail[2]))
        else:
            print("  %-8s failed: %s" % (form, detail))

    print()
    print("per-module .mpy sizes (bytes): mpy-cross bytecode / -march=xtensa")
    sizes = mpy_sizes(a.src)
    for m, (bc, xt) in sizes.items():
        print("  %-12s %7d %7d" % (m, bc, xt))
    print("  %-12s %7d %7d" % ("total", sum(v[0] for v in sizes.values()), sum(v[1] for v in sizes.values())))

    print()
    form = "frozen" if "frozen" in forms else forms[0]
    n = a.timing_runs
    heap = a.timing_heap or hi
    print("timing (%s form, %d K heap, median of %d)" % (form, heap, n))

    def med(flow, rounds, idx, conns=1):
        vals = []
        for _ in range(n):
            kind, detail, _ = b.run(flow, form, heap, rounds, conns)
            if kind == "ok":
                vals.append(detail[idx])
        return statistics.median(vals) if vals else None

    peer = b.peers["leaf"]

    def conns_per_run(flow, rounds, idx, conns=1):
        before = len(peer.log)
        m = med(flow, rounds, idx, conns)
        return m, (len(peer.log) - before) / n

    un, un_tcp = conns_per_run("nocheck", 1, 1)
    ver, ver_tcp = conns_per_run("verified", 1, 1)
    bare = med("plain", 1, 2)
    if un and ver:
        print("  first connect of a boot (espconn_secure_connect -> connect callback; the budget figure):"
              " unverified %.1f ms, CA-verified %.1f ms: verified / unverified = %.2f" % (un / 1000, ver / 1000, ver / un))
        print("  TCP connections per verified connect / per unverified: %.1f; bare tls connect + handshake %s" % (
            ver_tcp / max(un_tcp, 1e-9), "%.1f ms" % (bare / 1000) if bare else "-"))
    else:
        print("  connect: no figure (runs failed)")
    # the second connection of a boot to the same peer: the verified one is remembered (conn.peers)
    un2, un2_tcp = conns_per_run("nocheck", 1, 3, 2)
    ver2, ver2_tcp = conns_per_run("verified", 1, 3, 2)
    if un2 and ver2:
        print("  reconnect (2nd connect of a boot, same peer; verified: remembered check):"
              " unverified %.1f ms, CA-verified %.1f ms: verified / unverified = %.2f" % (un2 / 1000, ver2 / 1000, ver2 / un2))
        print("  TCP connections per verified reconnect / per unverified: %.1f" % (
            (ver2_tcp - ver_tcp) / max(un2_tcp - un_tcp, 1e-9)))
    else:
        print("  reconnect: no figure (runs failed)")
    rounds = 100
    cb, bare = med("nocheck", rounds, 2), med("plain", rounds, 1)
    if cb and bare:
        print("  %d x 64-byte echo: callbacks %.1f ms, bare tls loop %.1f ms: callbacks speed / bare = %.2f" % (
            rounds, cb / 1000, bare / 1000, bare / cb))
    else:
        print("  echo: no figure (runs failed)")


if __name__ == "__main__":
    main()
