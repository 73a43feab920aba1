"""espconn.binfmt on the real MicroPython unix port reading bins made by the host tool.

The same module runs on CPython (host tools) and on MicroPython; here both read
the same files and must see the same entries, bytes and errors.  Its reader,
walk, is espconn.castore's (what the device loads), so castore comes along:
48 KiB heap, as this 64-bit port's loaded code takes up to twice an ESP8266's.
"""

import hashlib
import json

import pytest

from espconn import binfmt
from espconn.errors import FormatError
from espssl import certs
from espssl.cli import main

pytestmark = pytest.mark.micropython


@pytest.fixture(scope="module")
def mpydir(firmware_mpy):
    """The modules binfmt needs, and only those, as .mpy from mpy-cross: how they
    are deployed (a 38 KiB heap cannot compile the espconn package from source)."""
    return firmware_mpy(modules=("__init__", "codes", "errors", "x509", "castore", "binfmt"))  # binfmt.walk is castore.walk (castore needs x509)


# Runs on MicroPython: walks FILE streaming (one 34-byte header buffer, data read
# in 256-byte chunks into a preallocated buffer, hashed as it goes), then parses
# it in RAM, and prints one JSON document.
_MP_WALK = r"""
import sys, gc, json, hashlib, binascii
from espconn import binfmt

path = sys.argv[1]
f = open(path, "rb")
f.seek(0, 2)
size = f.tell()

def read(off, buf):
    f.seek(off)
    n = f.readinto(buf)
    assert n == len(buf)

chunk = bytearray(256)
cmv = memoryview(chunk)
out = {"walk": [], "parse": [], "size": size}
gc.collect()
free0 = gc.mem_free()
for name, off, n in binfmt.walk(read, size):
    h = hashlib.sha256()
    done = 0
    while done < n:
        k = min(256, n - done)
        read(off + done, cmv[:k])
        h.update(cmv[:k])
        done += k
    out["walk"].append([name.decode(), off, n, binascii.hexlify(h.digest()).decode()])
f.close()
gc.collect()
out["walk_heap_delta"] = free0 - gc.mem_free()

with open(path, "rb") as f:
    img = f.read()
for name, data in binfmt.parse(img):
    e = [name.decode(), len(data), binfmt.data_kind(data), binascii.hexlify(hashlib.sha256(data).digest()).decode()]
    if e[2] == binfmt.KIND_PEM:
        e.append([[label, binascii.hexlify(hashlib.sha256(der).digest()).decode()]
                  for label, der in binfmt.pem_blocks(data)])
    out["parse"].append(e)
print(json.dumps(out))
"""


def cpython_view(path):
    img = path.read_bytes()
    walk = [[n.decode(), off, k, hashlib.sha256(img[off : off + k]).hexdigest()] for n, off, k in binfmt.walk_bytes(img)]
    parse = []
    for name, data in binfmt.parse(img):
        e = [name.decode(), len(data), binfmt.data_kind(data), hashlib.sha256(data).hexdigest()]
        if e[2] == binfmt.KIND_PEM:
            e.append([[label, hashlib.sha256(der).hexdigest()] for label, der in binfmt.pem_blocks(data)])
        parse.append(e)
    return {"walk": walk, "parse": parse, "size": len(img)}


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpbins")
    certs.make_set(d, "127.0.0.1", bits=1024)
    k = certs.new_key(1024)
    second = certs.make_cert("Second CA", k, is_ca=True)
    (d / "second.cer").write_bytes(certs.cert_der(second))
    (d / "both.pem").write_bytes((d / "ca.pem").read_bytes() + certs.cert_pem(second))
    out = {}

    def espssl(*argv):
        with pytest.raises(SystemExit) as ex:
            main([str(a) for a in argv])
        assert ex.value.code == 0

    out["der"] = d / "der.bin"
    espssl("ca-bin", "build", "--out", out["der"], d / "ca.der", d / "second.cer")
    out["pem"] = d / "pem.bin"
    espssl("ca-bin", "build", "--keep-pem", "--out", out["pem"], d / "both.pem", d / "ca.der")
    out["cert"] = d / "cert.bin"
    espssl("cert-bin", "build", "--out", out["cert"], "--cert", d / "server.pem", "--key", d / "server.key.pem")
    # as read back from a flash sector: the bin, then erased bytes
    out["flash"] = d / "flash.bin"
    out["flash"].write_bytes(out["der"].read_bytes() + b"\xff" * (4096 - out["der"].stat().st_size))
    out["dir"] = d
    return out


@pytest.mark.parametrize("which", ["der", "pem", "cert", "flash"])
def test_micropython_sees_what_cpython_sees(micropython, mpydir, bins, which):
    path = bins[which]
    # 64K: walk lives in castore, which loads the verifier (x509) with it; 64-bit objects.
    proc = micropython.run(_MP_WALK, args=[path], path=[mpydir], heapsize="64K")
    mp = json.loads(proc.stdout.strip().splitlines()[-1])
    print("%s: streaming walk of %d bytes, heap delta %d bytes" % (which, mp["size"], mp["walk_heap_delta"]))
    del mp["walk_heap_delta"]
    cp = cpython_view(path)
    assert mp == cp
    # and both match what went in
    names = [e[0] for e in cp["parse"]]
    d = bins["dir"]
    if which in ("der", "flash"):
        assert names == ["ca.der", "second.cer"]
        assert cp["parse"][0][3] == hashlib.sha256((d / "ca.der").read_bytes()).hexdigest()
    elif which == "pem":
        assert names == ["both.pem", "ca.der"] and cp["parse"][0][2] == "pem"
        assert [lbl for lbl, _ in cp["parse"][0][4]] == ["CERTIFICATE", "CERTIFICATE"]
        assert cp["parse"][0][4][1][1] == hashlib.sha256((d / "second.cer").read_bytes()).hexdigest()
    else:
        assert names == ["certificate", "private_key"]
        assert cp["parse"][1][3] == hashlib.sha256((d / "server.key.der").read_bytes()).hexdigest()


# Runs on MicroPython: each case's reason code (or "ok" and the entry count).
_MP_ERRORS = r"""
import sys, json, binascii
from espconn import binfmt
from espconn.errors import FormatError

import gc
out = []
hdr = bytearray(binfmt.HEADER_LEN)
gc.collect()
print("free after import:", gc.mem_free())
for path in sys.argv[1:]:
    f = open(path, "rb")
    f.seek(0, 2)
    size = f.tell()

    def read(off, buf):
        f.seek(off)
        f.readinto(buf)

    try:
        n = 0
        for _ in binfmt.walk(read, size, hdr):
            n += 1
        out.append("ok %d" % n)
    except FormatError as e:
        out.append(e.reason)
    f.close()
for fn in (lambda: binfmt.header("x" * 32, 1), lambda: binfmt.header("", 1), lambda: binfmt.header("a", 0xFFFF),
           lambda: binfmt.image([("a", b"1"), ("a", b"2")]), lambda: binfmt.image([("a", b"12345")], 38),
           lambda: list(binfmt.pem_blocks(b"-----BEGIN CERTIFICATE-----\nAAAA\n")),
           lambda: list(binfmt.pem_blocks(b"-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n"))):
    try:
        fn()
        out.append("ok")
    except FormatError as e:
        out.append(e.reason)
out.append(binascii.hexlify(binfmt.image([("ab", b"\x30\x00"), ("c", b"xyz")])).decode())
print(json.dumps(out))
"""


def cpython_reasons(cases):
    out = []
    for data in cases:
        try:
            out.append("ok %d" % sum(1 for _ in binfmt.walk_bytes(data)))
        except FormatError as e:
            out.append(e.reason)
    return out


def test_format_errors_on_micropython(micropython, mpydir, bins, tmp_path):
    good = bins["der"].read_bytes()
    first = binfmt.parse(good)[0]
    one = binfmt.entry(first[0], first[1])
    cases = [
        good,  # ok 2
        good + b"\xff" * 100,  # ok 2: erased flash after the list
        b"\xff" * 4096,  # ok 0: erased sector (the reader's caller decides that is an error)
        good[:-1],  # truncated: last entry claims one byte more than there is
        good + b"\x01\x02\x03",  # truncated: stray partial header
        b"\0" * 32 + b"\x01\x00A",  # bad_name: empty name
        b"ab\0c" + b"\0" * 28 + b"\x01\x00A",  # bad_name: bytes after the NUL
        b"x" * 32 + b"\x01\x00A",  # bad_name: no NUL at all
        binfmt.header("e", 1)[:32] + b"\0\0" + one,  # empty entry
        one + one[:40],  # truncated second entry
    ]
    files = []
    for i, c in enumerate(cases):
        files.append(tmp_path / ("case%d.bin" % i))
        files[-1].write_bytes(c)
    proc = micropython.run(_MP_ERRORS, args=files, path=[mpydir], heapsize="64K")
    mp = json.loads(proc.stdout.strip().splitlines()[-1])
    expect_walk = ["ok 2", "ok 2", "ok 0", "truncated", "truncated", "bad_name", "bad_name", "bad_name", "empty",
                   "truncated"]  # fmt: skip
    assert cpython_reasons(cases) == expect_walk
    assert mp[: len(cases)] == expect_walk
    assert mp[len(cases) : -1] == ["bad_name", "bad_name", "too_big", "duplicate_name", "too_big", "bad_pem", "bad_pem"]
    assert bytes.fromhex(mp[-1]) == binfmt.image([("ab", b"\x30\x00"), ("c", b"xyz")])


def test_pem_errors_on_cpython_match():
    for data in (b"-----BEGIN CERTIFICATE-----\nAAAA\n", b"-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(FormatError) as e:
            list(binfmt.pem_blocks(data))
        assert e.value.reason == "bad_pem"
