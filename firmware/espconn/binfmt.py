"""Espressif's certificate bin format: esp_ca_cert.bin and esp_cert_private_key.bin.

The one implementation of the format, shared by the device (reading the CA
store from flash) and the host tools (building and inspecting bins).  It runs
on MicroPython and CPython alike, so it uses only their common subset.

Layout, as the NONOS SDK's make_cacert.py writes it and the SDK reads it:

    entry := name[32]   NUL-padded ASCII, at most 31 bytes + NUL
             length     uint16, little-endian, number of data bytes
             data[length]  DER, or PEM text (one PEM entry may hold several
                           certificates)

Entries follow each other with no padding.  The list ends where the length
reads 0xFFFF (erased flash) or where the data runs out.

The streaming reader, ``walk``, lives in espconn.castore (walk() here calls
it): the device loads castore alone to read its store, not these writers.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from .errors import FormatError

NAME_LEN = const(32)  # name field, NUL-padded (castore.NAME_LEN: the reader's)
HEADER_LEN = const(34)  # name + uint16 length (castore.HEADER_LEN)
END_MARK = const(0xFFFF)  # length of erased flash: end of list
MAX_DATA = const(0xFFFE)  # largest length that is not END_MARK
_HDR_FMT = "<H"  # the length field, at offset NAME_LEN

KIND_DER = "der"
KIND_PEM = "pem"
KIND_UNKNOWN = "unknown"

_PEM_BEGIN = b"-----BEGIN "
_PEM_END = b"-----END "
_PEM_LABEL_MAX = const(64)  # "CERTIFICATE", "RSA PRIVATE KEY", ...: short words


def header(name, length):
    """The 34-byte header of one entry; ``name`` is str or bytes."""
    if isinstance(name, str):
        name = name.encode()
    if not name or len(name) >= NAME_LEN:
        raise FormatError(
            "bad_name", "entry name must be 1..%d bytes, got %d" % (NAME_LEN - 1, len(name))
        )
    if b"\0" in name:
        raise FormatError("bad_name", "entry name contains a NUL byte")
    if not 0 <= length <= MAX_DATA:
        raise FormatError(
            "too_big", "entry data is %d bytes; the format allows at most %d" % (length, MAX_DATA)
        )
    hdr = bytearray(HEADER_LEN)
    hdr[: len(name)] = name
    struct.pack_into(_HDR_FMT, hdr, NAME_LEN, length)
    return bytes(hdr)


def entry(name, data):
    """One whole entry: header then data."""
    return header(name, len(data)) + bytes(data)


def image(entries, max_bytes=0):
    """A whole image from ``[(name, data), ...]``, in the order given.

    Names must be unique (the SDK looks entries up by name); ``max_bytes``
    (0 = no limit) is the flash budget the image must fit.  Built into one
    preallocated buffer: no growing concatenation.
    """
    if not entries:
        raise FormatError("empty", "an image needs at least one entry")
    total = 0
    seen = []
    for name, data in entries:
        key = name.encode() if isinstance(name, str) else bytes(name)
        if key in seen:
            raise FormatError("duplicate_name", "entry name %s is used twice" % _show(key))
        seen.append(key)
        if len(data) == 0:
            raise FormatError("empty", "entry %s has no data" % _show(key))
        total += HEADER_LEN + len(data)
    if max_bytes and total > max_bytes:
        raise FormatError(
            "too_big", "the image is %d bytes; the flash budget is %d bytes" % (total, max_bytes)
        )
    out = bytearray(total)
    off = 0
    for name, data in entries:
        hdr = header(name, len(data))
        out[off : off + HEADER_LEN] = hdr
        off += HEADER_LEN
        out[off : off + len(data)] = data
        off += len(data)
    return bytes(out)


def walk(read, size, hdr=None):
    """espconn.castore.walk, the one reader of the format (see there); imported
    on first use, so importing this module loads nothing more."""
    from . import castore

    return castore.walk(read, size, hdr)


def _show(name):
    from . import castore

    return castore._show(name)


def walk_bytes(buf):
    """``walk`` over an image already in RAM (bytes, bytearray or memoryview)."""
    mv = memoryview(buf)

    def read(off, dest):
        dest[:] = mv[off : off + len(dest)]

    return walk(read, len(mv))


def parse(buf):
    """All entries of an image in RAM as a list of ``(name, memoryview)``."""
    mv = memoryview(buf)
    return [(name, mv[off : off + n]) for name, off, n in walk_bytes(mv)]


def data_kind(data):
    """``KIND_DER`` (a SEQUENCE tag), ``KIND_PEM`` (armored text) or ``KIND_UNKNOWN``."""
    if len(data) >= 2 and data[0] == 0x30:
        return KIND_DER
    # PEM may follow a text preamble (openssl x509 -text output): look for armor.
    if bytes(data[:4096]).find(_PEM_BEGIN) >= 0:
        return KIND_PEM
    return KIND_UNKNOWN


def pem_blocks(data):
    """Yield ``(label, der_bytes)`` for each PEM block in ``data``.

    Raises FormatError on an unterminated block or bad base64.  Decodes one
    block at a time, so RAM holds at most one certificate.
    """
    import binascii

    data = bytes(data) if not isinstance(data, bytes) else data
    pos = 0
    while True:
        start = data.find(_PEM_BEGIN, pos)
        if start < 0:
            return
        eol = data.find(b"-----", start + len(_PEM_BEGIN))
        if eol < 0 or eol - start > _PEM_LABEL_MAX + len(_PEM_BEGIN):
            raise FormatError("bad_pem", "PEM header not terminated at offset %d" % start)
        label = data[start + len(_PEM_BEGIN) : eol]
        body = eol + 5
        end = data.find(_PEM_END + label + b"-----", body)
        if end < 0:
            raise FormatError("bad_pem", "PEM block %s has no END line" % _show(label))
        try:
            der = binascii.a2b_base64(data[body:end])
        except Exception:
            raise FormatError("bad_pem", "PEM block %s is not valid base64" % _show(label))
        yield _show(label), der
        pos = end + len(_PEM_END) + len(label) + 5
