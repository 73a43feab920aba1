"""The CA store: Espressif's esp_ca_cert.bin read straight from flash.

    store = castore.open(sector)          # on the board: esp.flash_read
    store = CAStore(read, base, size)     # read(offset, buf) fills buf
    store.check() -> number of certificates, or StoreError
    for der in store: ...                 # each trusted certificate, DER bytes
    store.issuers(name_buf, off, end)     # those whose subject is that Name
    store.issuers_of(certs)               # those that may issue one of a chain's

The format is espconn.binfmt's: entries of a NUL-padded name, a uint16 length
and the data, ending at a length of 0xFFFF.  Its reader, ``walk``, is here
(binfmt re-exports it), so the device loads this module and not binfmt's
writers.  An entry holds one
DER certificate, or PEM text with one or more CERTIFICATE blocks (text around
the blocks, such as ``openssl x509 -text`` output, is ignored).

Streaming, so RAM does not grow with the number of certificates: entry
headers are read one at a time by walk, a DER entry is read into one
certificate buffer reused for every entry, and PEM text is read in 64-byte
chunks and decoded block by block, 48 bytes at a time, into that same buffer.
The buffer is as large as the largest certificate seen (at most 4 KiB) and
lives only while a scan runs.  Subjects are compared in place (x509.cert_names
and x509.equal); only a match is copied out as ``bytes``.

Fail closed.  The first use of a store checks every entry end to end: each
certificate is parsed as espconn.x509 parses it (dates, key, extensions), and
after the last entry the rest of the store must be erased (0xFF), so a length
damaged into the end mark cannot silently drop certificates.  Anything but a
store of well-formed certificates raises StoreError, whose ``.reason`` is:
    erased           nothing but 0xFF where the store should be
    empty            no certificate at all
    truncated        an entry, certificate or PEM block cut short
    corrupt          a bad entry header, DER structure or base64 text
    not_certificate  an entry (or PEM block) that is no certificate
    private_key      a private key (a key bin flashed at the CA sector?)
    too_big          a certificate larger than MAX_CERT bytes
    read_failed      the flash read itself failed
An empty or unreadable store never means "no CAs, so accept anything".

Integrity of each anchor: espconn.x509 checks a self-issued anchor's own
signature before trusting it, and remembers the SHA-256 of the anchors it
checked in ``store.verified``: pass the same list (``open(sector,
verified=lst)``) for every connection to pay that RSA check once per anchor
per boot.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from . import x509
from .errors import FormatError, StoreError, VerifyError

NAME_LEN = const(32)  # entry header: NUL-padded name, then a uint16 LE length
HEADER_LEN = const(34)
_END_MARK = const(0xFFFF)  # length of erased flash: end of list

SECTOR = const(4096)  # flash sector size: store offsets are sector * SECTOR
MAX_CERT = const(4096)  # largest certificate accepted, bytes of DER
_CHUNK = const(64)  # PEM text read per flash access
_B64 = const(64)  # base64 characters decoded at a time (-> 48 bytes)
_LINE = const(80)  # bytes kept of a text line outside a PEM body
_FAST = const(66)  # a 64-character base64 line and CRLF
_DEPTH = const(10)  # DER nesting a certificate may use (x509.check)
_GROW = const(256)  # certificate buffer granularity

# PEM armor (RFC 7468).
_BEGIN = b"-----BEGIN "
_END_CERT = b"-----END CERTIFICATE-----"
_LABEL_CERT = b"CERTIFICATE"
_DASHES = b"-----"

# _pem() states
_S_TEXT = const(0)  # outside a block: collecting a line
_S_BODY = const(1)  # inside a CERTIFICATE block: base64
_S_END = const(2)  # collecting the END line

# Lookup: byte -> is a base64 alphabet character (A-Z a-z 0-9 + /).
_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _err(reason, msg):
    return StoreError(reason, "CA store: " + msg)


def _ent(reason, name, msg):
    # An error in one entry: the message names it.  Texts stay short: on the
    # board every string of a loaded .mpy sits in RAM.
    return StoreError(reason, "CA store: entry %s: %s (%s)" % (_show(name), msg, reason))


class CAStore:
    """A CA store at byte offset ``base``, at most ``size`` bytes long.

    ``read(offset, buf)`` fills ``buf`` with the bytes at absolute ``offset``
    (esp.flash_read's signature).  Holds no certificate between calls.
    """

    def __init__(self, read, base, size=SECTOR, verified=None):
        self._read = read
        self.base = base
        self.size = size
        self._count = -1  # certificates found by check(); -1: not checked yet
        self._hdr = bytearray(HEADER_LEN)  # walk's header buffer
        # SHA-256 of anchors whose own signature espconn.x509 checked (see above)
        self.verified = [] if verified is None else verified

    # -- reading -----------------------------------------------------------------
    def _rd(self, off, buf):
        # walk's read(): offsets relative to the store
        try:
            self._read(self.base + off, buf)
        except OSError as e:
            raise _err("read_failed", "flash read at 0x%x failed: %s" % (self.base + off, e))

    def _entries(self):
        try:
            for e in walk(self._rd, self.size, self._hdr):
                self._last = e[1] + e[2]  # just past this entry
                yield e
        except FormatError as e:
            raise _err("truncated" if e.reason == "truncated" else "corrupt", e.msg)
        except ValueError:  # UnicodeError: an entry name that is not text
            raise _err("corrupt", "entry name not text")

    def _certs(self):
        """Yield ``(name, sc, n)`` per certificate: its DER is sc[0][:n].

        sc[0] is this scan's certificate buffer, overwritten by the next
        certificate; each scan has its own, so scans may nest.  Only sc holds
        it while the consumer runs: setting sc[0] = None frees it (the next
        certificate then gets a new one).
        """
        sc = [None]  # the scan's certificate buffer (see _room)
        for name, off, n in self._entries():
            # Peek at the first byte: DER SEQUENCE or text.
            buf = _room(sc, 1, 0)
            self._rd(off, memoryview(buf)[:1])
            if buf[0] == 0x30:
                buf = _room(sc, n, 0)
                self._rd(off, memoryview(buf)[:n])
                _cert(name, buf, n, self._count < 0)
                buf = None
                yield name, sc, n
            else:
                buf = None
                count = 0
                for k in self._pem(sc, name, off, n):
                    count += 1
                    yield name, sc, k
                if count == 0:
                    raise _ent("not_certificate", name, "neither DER nor PEM certificate")

    def _pem(self, sc, name, off, size):
        """Yield the DER length of each CERTIFICATE block of a PEM entry, decoded into sc[0]."""
        import binascii

        chunk = bytearray(_CHUNK)
        cmv = memoryview(chunk)
        line = bytearray(_LINE)
        q = bytearray(_B64)  # base64 characters waiting to be decoded
        fast = bytearray(_FAST)  # one whole 64-character line and its newline
        fmv = memoryview(fast)
        nq = 0
        nl = 0  # bytes in line
        state = _S_TEXT
        pad = 0  # '=' seen in this body
        pos = 0  # entry bytes consumed
        out = 0  # DER bytes decoded in this block
        sol = False  # pos is at the start of a body line
        while pos < size or state != _S_TEXT or nl:
            if sol:
                # Fast path for the usual body line, 64 characters then LF or
                # CRLF: one a2b_base64 call instead of a loop over 65 bytes.
                # a2b_base64 skips what is not base64, so 48 bytes out proves
                # all 64 were base64 characters (and none was padding).
                sol = False
                if size - pos >= _FAST:
                    self._rd(off + pos, fmv)
                    adv = 65 if fast[64] == 0x0A else (66 if fast[64] == 0x0D and fast[65] == 0x0A else 0)
                    if adv:
                        try:
                            data = binascii.a2b_base64(fmv[:64])  # type: ignore[arg-type]  # any buffer (extmod)
                        except ValueError:
                            data = b""
                        if len(data) == 48:
                            out = _put(sc, data, out, name)
                            pos += adv
                            sol = True
                            continue
            k = size - pos
            if k > _CHUNK:
                k = _CHUNK
            if k:
                self._rd(off + pos, cmv[:k])
                pos += k
            else:
                # End of the entry: end the last line as if a newline followed.
                if state == _S_BODY:
                    raise _ent("truncated", name, "PEM block without END line")
                chunk[0] = 0x0A
                k = 1
            for i in range(k):
                c = chunk[i]
                if state == _S_BODY:
                    if c == 0x2D:  # '-': the END line starts
                        if nq:
                            if nq & 3:
                                raise _ent("corrupt", name, "bad base64 length")
                            out = _b64(sc, binascii, q, nq, out, name)
                            nq = 0
                        state = _S_END
                        line[0] = c
                        nl = 1
                    elif c in _ALPHA and not pad:
                        q[nq] = c
                        nq += 1
                        if nq == _B64:
                            out = _b64(sc, binascii, q, nq, out, name)
                            nq = 0
                    elif c == 0x3D and pad < 2:  # '=': padding, at the end only
                        pad += 1
                        q[nq] = c
                        nq += 1
                    elif c == 0x0A and not nq and not pad:
                        # A line ends on a 4-character boundary: let the next
                        # one try the fast path (the chunk is read again there).
                        pos = pos - k + i + 1
                        sol = True
                        break
                    elif c not in b" \t\r\n":
                        raise _ent("corrupt", name, "byte 0x%02x in base64" % c)
                    continue
                if c != 0x0A:
                    if nl < _LINE:
                        line[nl] = c
                    nl += 1
                    continue
                # A whole line (outside a body, or the END line).
                n = nl if nl < _LINE else _LINE
                while n and line[n - 1] in b" \t\r":
                    n -= 1
                nl = 0
                text = memoryview(line)[:n]
                if state == _S_END:
                    if bytes(text) != _END_CERT:
                        raise _ent("corrupt", name, "bad PEM END line")
                    state = _S_TEXT
                    if out == 0:
                        raise _ent("not_certificate", name, "empty PEM block")
                    _cert(name, sc[0], out, self._count < 0)
                    yield out
                    out = 0
                    continue
                if n < 16 or bytes(text[:11]) != _BEGIN:
                    continue  # text around the blocks
                if bytes(text[n - 5 :]) != _DASHES:
                    raise _ent("corrupt", name, "bad PEM BEGIN line")
                label = bytes(text[11 : n - 5])
                if label != _LABEL_CERT:
                    if label.find(b"PRIVATE KEY") >= 0:
                        raise _ent("private_key", name, "PEM " + _show(label))
                    raise _ent("not_certificate", name, "PEM " + _show(label))
                state = _S_BODY
                pad = 0
                out = 0
                pos = pos - k + i + 1
                sol = True
                break

    # -- the API -----------------------------------------------------------------
    def check(self):
        """Check every entry; return the number of certificates or raise StoreError."""
        count = 0
        self._last = 0
        for _c in self._certs():
            count += 1
        # After the last entry: erased flash only (the end mark and beyond).
        off = self._last
        hdr = self._hdr
        while off < self.size:
            k = min(HEADER_LEN, self.size - off)
            mv = memoryview(hdr)[:k]
            self._rd(off, mv)
            for b in mv:
                if b != 0xFF:
                    raise _err("empty" if count == 0 else "corrupt", "data after the end of the list at 0x%x" % (self.base + off))
            off += k
        if count == 0:
            raise _err("erased", "flash at 0x%x is erased (all 0xFF)" % self.base)
        self._count = count
        return count

    def __iter__(self):
        if self._count < 0:
            self.check()
        for _name, sc, n in self._certs():
            yield bytes(memoryview(sc[0])[:n])

    def issuers(self, name_buf, off, end):
        """Yield (as bytes) each certificate whose subject Name equals name_buf[off:end]."""
        if self._count < 0:
            self.check()
        want = end - off
        for _name, sc, n in self._certs():
            mv = memoryview(sc[0])[:n]
            s0, s1 = x509.cert_names(mv)[2:]
            if s1 - s0 == want and x509.equal(mv, s0, s1, name_buf, off, end):
                c = bytes(mv)
                # The caller checks the candidate (RSA: the heap peak) while
                # this scan waits: let the scan buffer go meanwhile.
                del mv
                sc[0] = None
                yield c

    def issuers_of(self, certs):
        """The certificates (bytes, in store order, each once) whose subject Name is
        the issuer Name of one of the DER ``certs``: every anchor x509.verify_chain
        can ask of this store for that chain, in one scan, so that the store's code
        can go before the chain's RSA work (check.run).  A chain certificate whose
        names cannot be read names no issuer (verify_chain refuses it itself)."""
        if self._count < 0:
            self.check()
        names = []
        for c in certs:
            try:
                names.append((c,) + x509.cert_names(c)[:2])
            except VerifyError:
                pass
        out = []
        for _name, sc, n in self._certs():
            mv = memoryview(sc[0])[:n]
            s0, s1 = x509.cert_names(mv)[2:]
            for c, i0, i1 in names:
                if x509.equal(mv, s0, s1, c, i0, i1):
                    out.append(bytes(mv))
                    break
        return out


def _show(name):
    # A name for an error message: printable ASCII as is, other bytes as \\xNN
    # (names come from flash and may be anything; decode() could raise).
    return "".join([chr(b) if 32 <= b < 127 else "\\x%02x" % b for b in name])


def walk(read, size, hdr=None):
    """Yield ``(name, data_offset, data_length)`` for each entry, streaming.

    ``read(offset, buf)`` fills ``buf`` (a bytearray of HEADER_LEN bytes) with
    the image's bytes at ``offset``; ``size`` is how many bytes the image may
    span (file length, or the flash budget).  Only one header is in RAM at a
    time, so a store of any length costs the same.  Raises FormatError for
    anything that is neither a well-formed entry nor the end of the list.
    """
    if hdr is None:
        hdr = bytearray(HEADER_LEN)
    off = 0
    index = 0
    while off < size:
        left = size - off
        if left < HEADER_LEN:
            tail = memoryview(hdr)[:left]
            read(off, tail)
            for b in tail:
                if b != 0xFF:
                    raise FormatError(
                        "truncated", "%d stray bytes at offset 0x%x after the last entry" % (left, off)
                    )
            return
        read(off, hdr)
        length = hdr[NAME_LEN] | hdr[NAME_LEN + 1] << 8
        if length == _END_MARK:
            return
        # The name is NUL-padded: 1..31 bytes up to the first NUL, nothing but
        # NULs after.
        name = bytes(hdr[:NAME_LEN])
        k = name.find(b"\0")
        if k <= 0 or name.count(b"\0", k) != NAME_LEN - k:
            raise FormatError("bad_name", "entry %d at offset 0x%x has no valid NUL-padded name" % (index, off))
        name = name[:k]
        if length == 0:
            raise FormatError("empty", "entry %d (%s) at offset 0x%x is empty" % (index, _show(name), off))
        off += HEADER_LEN
        if length > size - off:
            raise FormatError(
                "truncated",
                "entry %d (%s) claims %d bytes but only %d remain" % (index, _show(name), length, size - off),
            )
        yield name, off, length
        off += length
        index += 1


def _room(sc, n, keep):
    # The scan's certificate buffer sc[0], at least n bytes, keeping its first
    # ``keep`` bytes.  It only grows, to the largest certificate met.
    if n > MAX_CERT:
        raise _err("too_big", "certificate of %d bytes (max %d)" % (n, MAX_CERT))
    buf = sc[0]
    if buf is None or len(buf) < n:
        new = bytearray((n + _GROW - 1) // _GROW * _GROW)
        if buf is not None and keep:
            new[:keep] = memoryview(buf)[:keep]
        sc[0] = buf = new
    return buf


def _cert(name, buf, n, deep):
    # Is buf[:n] exactly one DER certificate?  StoreError if not.  ``deep``
    # (check(), the store's first use): every TLV, and parsed as x509 does.
    mv = memoryview(buf)[:n]
    try:
        tag, v, e = x509.read(mv, 0, n)
        if tag != 0x30:
            raise _ent("not_certificate", name, "not a certificate")
        if e != n:
            raise _ent("corrupt", name, "bytes after the certificate")
        t, tv, te = x509.read(mv, v, e)
        if t == 0x02:
            # SEQUENCE { INTEGER version, ... }: RSAPrivateKey (PKCS#1) or
            # PrivateKeyInfo (PKCS#8), never a certificate.
            raise _ent("private_key", name, "private key")
        if t != 0x30:
            raise _ent("not_certificate", name, "not a certificate")
        x509.cert_names(mv)
        if deep:
            x509.check(mv, 0, n, _DEPTH)
            try:
                x509._parse(mv)  # what the verifier will read of it: dates, key, extensions
            except VerifyError as ex:
                if ex.reason == "malformed":
                    raise
    except VerifyError as ex:
        reason = "truncated" if ex.msg.find("beyond") >= 0 else "corrupt"
        raise _ent(reason, name, ex.msg)


def _b64(sc, binascii, q, nq, out, name):
    # Decode q[:nq] (a multiple of 4 characters) into the scan buffer at out.
    try:
        data = binascii.a2b_base64(memoryview(q)[:nq])
    except ValueError:
        raise _ent("corrupt", name, "bad base64")
    return _put(sc, data, out, name)


def _put(sc, data, out, name):
    # Append decoded bytes to the scan buffer at out; the new length.
    n = len(data)
    if out == 0:
        # The first bytes hold the DER header: size the buffer once for it.
        if n < 4 or data[0] != 0x30:
            raise _ent("not_certificate", name, "PEM block holds no certificate")
        # Total DER length from the header: SEQUENCE, 1..3 length bytes.
        t = data[1]
        if t > 0x80:
            k = t & 0x7F
            if k > 3 or n < 2 + k:
                raise _ent("corrupt", name, "bad DER length")
            t = 0
            for i in range(2, 2 + k):
                t = (t << 8) | data[i]
            t += 2 + k
        else:
            t += 2
        buf = _room(sc, max(t, n), 0)
    else:
        buf = _room(sc, out + n, out)
    buf[out : out + n] = data
    return out + n


def open(sector, size=SECTOR, verified=None):
    """The store flashed at ``sector`` (esp_ca_cert.bin written at sector * 4096).

    Reads go through esp.flash_read with 4-byte aligned offsets and lengths,
    into a small aligned scratch buffer: the SDK's spi_flash_read works on
    whole words, while walk reads 34-byte headers at any offset.
    """
    import esp

    fr = esp.flash_read
    tmp = bytearray(_CHUNK + 8)
    tmv = memoryview(tmp)

    def read(off, buf):
        mv = memoryview(buf)
        n = len(mv)
        done = 0
        while done < n:
            a = (off + done) & ~3
            skip = off + done - a
            k = n - done
            if k > _CHUNK:
                k = _CHUNK
            fr(a, tmv[: (skip + k + 3) & ~3])
            mv[done : done + k] = tmv[skip : skip + k]
            done += k

    return CAStore(read, sector * SECTOR, size, verified)
