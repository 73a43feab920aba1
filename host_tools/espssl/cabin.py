"""Build and inspect Espressif's certificate bins (what make_cacert.py / make_cert.py did).

    esp_ca_cert.bin           CA certificates the device trusts (one entry per file)
    esp_cert_private_key.bin  the device's own certificate ("certificate") and key ("private_key")

The format itself lives in ``espconn.binfmt`` (shared with the firmware); this
module adds the host side: reading certificate files, refusing what the device
could not use, writing the file atomically, and explaining a bin entry by entry.

Library API:
    build_ca_bin(paths, keep_pem=False, max_bytes=4096) -> bytes
    build_cert_bin(cert_path, key_path) -> bytes
    inspect_bin(data, kind="ca", now=None) -> Report  (.entries, .errors, .warnings)
    write_output(path, data, force=False, secret=False) -> Path
"""

import datetime
import hashlib
import os
import secrets
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from espconn import binfmt
from espconn.errors import FormatError

from . import certs
from .cli import int_arg
from .errors import EspsslError

DEFAULT_CA_BIN = "esp_ca_cert.bin"
DEFAULT_CERT_BIN = "esp_cert_private_key.bin"
SECTOR = 4096  # one flash sector: the default budget of a CA bin
# Entry names of esp_cert_private_key.bin, as the SDK's make_cert.py writes them.
CERT_NAME = "certificate"
KEY_NAME = "private_key"

ERROR = "error"
WARNING = "warning"

# --- reading inputs -------------------------------------------------------------------


def _der_len(data, off=0):
    """Total length of the DER TLV at ``off``, or None if it cannot be one."""
    if len(data) < off + 2:
        return None
    n = data[off + 1]
    if n < 0x80:
        return 2 + n
    k = n & 0x7F
    if k == 0 or k > 4 or len(data) < off + 2 + k:
        return None
    return 2 + k + int.from_bytes(data[off + 2 : off + 2 + k], "big")


def _is_private_key_der(data):
    try:
        serialization.load_der_private_key(bytes(data), password=None)
        return True
    except TypeError:  # encrypted PKCS#8: a key all the same
        return True
    except Exception:
        return False


def _load_der_cert(data):
    """The certificate in ``data`` (exactly one DER certificate) or None."""
    if _der_len(data) != len(data):
        return None
    try:
        return x509.load_der_x509_certificate(bytes(data))
    except Exception:
        return None


class Input:
    """One certificate file read for a CA bin: raw bytes, kind, DER certificates."""

    def __init__(self, path, ca=True):
        # ca: the file is meant for a CA bundle (said in the private-key refusal)
        keys_never = ": a private key must never go into a CA bundle" if ca else ", not a certificate"
        self.path = Path(path)
        self.name = self.path.name
        try:
            self.raw = self.path.read_bytes()
        except OSError as e:
            raise EspsslError("cannot read %s: %s" % (path, e.strerror or e)) from None
        self.kind = binfmt.data_kind(self.raw)
        self.ders = []  # DER bytes of each certificate, in file order
        if self.kind == binfmt.KIND_DER:
            if _load_der_cert(self.raw) is None:
                if _is_private_key_der(self.raw):
                    raise EspsslError("%s is a private key%s" % (path, keys_never))
                if _der_len(self.raw) is not None and _der_len(self.raw) < len(self.raw):
                    if _load_der_cert(self.raw[: _der_len(self.raw)]) is not None:
                        raise EspsslError(
                            "%s: %d bytes of trailing garbage after the certificate"
                            % (path, len(self.raw) - _der_len(self.raw))
                        )
                raise EspsslError("%s is not a certificate (DER that does not parse as X.509)" % path)
            self.ders.append(self.raw)
        elif self.kind == binfmt.KIND_PEM:
            try:
                blocks = list(binfmt.pem_blocks(self.raw))
            except FormatError as e:
                raise EspsslError("%s: %s" % (path, e.msg)) from None
            for label, der in blocks:
                if "PRIVATE KEY" in label:
                    raise EspsslError("%s holds a private key (%s)%s" % (path, label, keys_never))
                if label != "CERTIFICATE" or _load_der_cert(der) is None:
                    raise EspsslError("%s: PEM block %s is not a certificate" % (path, label))
                self.ders.append(der)
            if not self.ders:
                raise EspsslError("%s holds no certificate" % path)
        else:
            what = "an empty file" if not self.raw else "neither DER nor PEM"
            raise EspsslError("%s is not a certificate (%s)" % (path, what))


def split_named(arg):
    """``(entry name or None, path)`` of a build input: ``PATH`` or ``NAME=PATH``.

    An existing file wins, so a file whose name holds '=' is still a path.
    """
    arg = str(arg)
    name, eq, path = arg.partition("=")
    if not eq or Path(arg).exists() or not name or not path:
        return None, arg
    return name, path


def ca_entries(paths, keep_pem=False):
    """``[(name, data)]`` for a CA bin, one entry per input, in order.

    An input is ``PATH`` (the entry is named after the file) or ``NAME=PATH``
    (three ``ca.der`` from three ``espssl certs`` runs: ``home=a/ca.der ...``).
    DER files are stored as they are (byte-identical to make_cacert.py); PEM
    files are stored as text with ``keep_pem``, else converted to DER; a PEM
    file holding several certificates becomes entries "NAME#1", "NAME#2", ...
    """
    if not paths:
        raise EspsslError("no input: give at least one certificate file")
    entries = []
    for arg in paths:
        given, p = split_named(arg)
        inp = Input(p)
        name = given or inp.name
        if inp.kind == binfmt.KIND_DER or keep_pem:
            entries.append((name, inp.raw))
        elif len(inp.ders) == 1:
            entries.append((name, inp.ders[0]))
        else:
            for i, der in enumerate(inp.ders):
                entries.append(("%s#%d" % (name, i + 1), der))
    _check_names(entries)
    return entries


def _check_names(entries):
    seen = {}
    for name, data in entries:
        raw = name.encode()
        if len(raw) >= binfmt.NAME_LEN:
            raise EspsslError(
                "entry name %r is %d bytes; the format allows at most %d (rename the file or give NAME=PATH)"
                % (name, len(raw), binfmt.NAME_LEN - 1)
            )
        if name in seen:
            raise EspsslError("duplicate entry name %r (two inputs with the same file name): name the "
                              "entries with NAME=PATH, e.g. home=certs1/ca.der office=certs2/ca.der" % name)
        seen[name] = True
        if len(data) > binfmt.MAX_DATA:
            raise EspsslError(
                "entry %r is %d bytes; the format allows at most %d per entry" % (name, len(data), binfmt.MAX_DATA)
            )


def build_ca_bin(paths, keep_pem=False, max_bytes=SECTOR):
    """The bytes of an esp_ca_cert.bin made from certificate files, in the order given."""
    if max_bytes and max_bytes < binfmt.HEADER_LEN + 1 or (max_bytes or 0) < 0:
        raise EspsslError("--max-bytes %d cannot hold even one entry" % max_bytes)
    entries = ca_entries(paths, keep_pem)
    total = sum(binfmt.HEADER_LEN + len(d) for _, d in entries)
    if max_bytes and total > max_bytes:
        raise EspsslError(
            "the bundle is %d bytes, over the flash budget of %d bytes (--max-bytes); "
            "drop certificates or give a larger budget" % (total, max_bytes)
        )
    image = binfmt.image(entries, max_bytes or 0)
    _check_round_trip(image, entries)
    return image


def _check_round_trip(image, entries):
    # The shared reader must see exactly what was written.
    back = [(n.decode(), bytes(d)) for n, d in binfmt.parse(image)]
    if back != [(n, bytes(d)) for n, d in entries]:
        raise AssertionError("binfmt does not read back what it wrote")


def _read_key(path):
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise EspsslError("cannot read %s: %s" % (path, e.strerror or e)) from None
    try:
        if binfmt.data_kind(raw) == binfmt.KIND_PEM:
            return serialization.load_pem_private_key(raw, password=None)
        return serialization.load_der_private_key(raw, password=None)
    except TypeError:
        raise EspsslError("%s is an encrypted private key; decrypt it first" % path) from None
    except Exception:
        raise EspsslError("%s is not a private key (PEM or DER)" % path) from None


def build_cert_bin(cert_path, key_path):
    """The bytes of an esp_cert_private_key.bin: "certificate" (DER), "private_key" (PKCS#1 DER)."""
    inp = Input(cert_path, ca=False)
    if len(inp.ders) != 1:
        raise EspsslError("%s holds %d certificates; the device certificate is one" % (cert_path, len(inp.ders)))
    cert = x509.load_der_x509_certificate(inp.ders[0])
    key = _read_key(key_path)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise EspsslError("%s is a %s key; axTLS takes RSA keys only" % (key_path, _key_type(key.public_key())))
    if key.public_key().public_numbers() != getattr(cert.public_key(), "public_numbers", lambda: None)():
        raise EspsslError("%s does not belong to %s (public keys differ)" % (key_path, cert_path))
    key_der = certs.key_der_pkcs1(key)
    entries = [(CERT_NAME, inp.ders[0]), (KEY_NAME, key_der)]
    _check_names(entries)
    image = binfmt.image(entries)
    _check_round_trip(image, entries)
    return image


def write_output(path, data, force=False, secret=False):
    """Write ``data`` to ``path`` all at once (temp file + rename); never half a file."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise EspsslError("%s exists; use --force to overwrite it" % path)
    if path.is_dir():
        raise EspsslError("%s is a directory" % path)
    parent = path.parent
    if not parent.is_dir():
        raise EspsslError("directory %s does not exist" % parent)
    tmp = parent / (".%s.%s.tmp" % (path.name, secrets.token_hex(4)))
    try:
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if secret:
            os.chmod(str(tmp), 0o600)
        os.replace(str(tmp), str(path))
    except OSError as e:
        raise EspsslError("cannot write %s: %s" % (path, e.strerror or e)) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --- inspecting -------------------------------------------------------------------------


def _key_type(pub):
    if isinstance(pub, rsa.RSAPublicKey):
        return "RSA-%d" % pub.key_size
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return "EC-%s" % pub.curve.name
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(pub, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(pub, dsa.DSAPublicKey):
        return "DSA-%d" % pub.key_size
    return type(pub).__name__


def fingerprint(der):
    return hashlib.sha256(bytes(der)).hexdigest().upper()


class CertInfo:
    """What inspect shows for one certificate, plus its problems.

    cryptography parses fields lazily, so a damaged certificate may load and
    still fail on one field: each field is read on its own and a failure is
    reported as an error, never raised.
    """

    def __init__(self, der, now, role="ca"):
        self.der = bytes(der)
        self.problems = []  # (level, text)
        cert = _load_der_cert(self.der)
        self.cert = cert
        if cert is None:
            self.problems.append((ERROR, "not a certificate (DER that does not parse as X.509)"))
            return
        self.sha256 = fingerprint(self.der)
        self.subject = self._field("subject", lambda: cert.subject.rfc4514_string() or "(empty)", "?")
        self.issuer = self._field("issuer", lambda: cert.issuer.rfc4514_string() or "(empty)", "?")
        self.self_signed = self._field("names", lambda: cert.subject == cert.issuer, False)
        self.not_before = self._field("validity", lambda: cert.not_valid_before_utc, None)
        self.not_after = self._field("validity", lambda: cert.not_valid_after_utc, None) if self.not_before else None
        pub = self._field("public key", cert.public_key, None)
        self.key = _key_type(pub) if pub is not None else "unreadable"
        self.sig = self._field(
            "signature algorithm",
            lambda: cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else "none",
            "unknown",
        )  # fmt: skip
        if self.not_after is not None and now > self.not_after:
            self.problems.append((ERROR, "expired on %s" % _when(self.not_after)))
        elif self.not_before is not None and now < self.not_before:
            self.problems.append((WARNING, "not valid before %s" % _when(self.not_before)))
        if pub is None:
            pass
        elif not isinstance(pub, rsa.RSAPublicKey):
            self.problems.append((ERROR, "%s key: axTLS and espconn check RSA certificates only" % self.key))
        elif pub.key_size < 1024:
            self.problems.append((ERROR, "weak key: RSA-%d (espconn wants at least 1024 bits)" % pub.key_size))
        elif pub.key_size < 2048:
            self.problems.append((WARNING, "weak key: RSA-%d (2048 bits recommended)" % pub.key_size))
        if self.sig in ("sha1", "md5"):
            self.problems.append((WARNING, "signed with %s" % {"sha1": "SHA-1", "md5": "MD5"}[self.sig]))
        if self.self_signed and isinstance(pub, rsa.RSAPublicKey):
            self._check_own_signature(cert)
        if role == "ca":
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
                if not bc.ca:
                    self.problems.append((WARNING, _not_a_ca_text(self.self_signed)))
            except x509.ExtensionNotFound:
                self.problems.append((WARNING, "no basicConstraints (X.509 %s): not marked as a CA"
                                      % cert.version.name))  # fmt: skip
            except Exception as e:
                self.problems.append((ERROR, "unreadable extensions: %s" % _one_line(e)))

    def _check_own_signature(self, cert):
        # The device trusts an anchor as it is (it never checks the anchor's own
        # signature), so a damaged or altered CA is caught here or nowhere.
        try:  # by hand: OpenSSL's X.509 policy would refuse SHA-1 before looking at the signature
            cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                     cert.signature_algorithm_parameters, cert.signature_hash_algorithm)
        except Exception as e:  # InvalidSignature, or an unsupported algorithm/padding
            why = "does not verify" if type(e).__name__ == "InvalidSignature" else "cannot be checked (%s)" % _one_line(e)
            self.problems.append((ERROR, "its own signature %s: the certificate was damaged or altered "
                                  "after it was signed" % why))

    def _field(self, what, get, default):
        try:
            return get()
        except Exception as e:
            self.problems.append((ERROR, "unreadable %s: %s" % (what, _one_line(e))))
            return default


def _one_line(e):
    return (str(e) or type(e).__name__).splitlines()[0][:120]


def _not_a_ca_text(self_signed):
    """What espconn does with a basicConstraints CA:FALSE certificate in its CA store."""
    if self_signed:
        return ("not a CA (basicConstraints CA:FALSE): espconn trusts only a server that sends exactly this "
                "self-signed certificate; certificates it signed are refused (not_a_ca)")
    return ("not a CA (basicConstraints CA:FALSE): espconn never uses it as a trust anchor, so a server "
            "sending it is refused (unknown_issuer); put the CA that issued it in the bundle, or pin the "
            "server with espconn_secure_set_pin(conn, sha256) (the sha256 above)")


def _when(dt):
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


class Entry:
    def __init__(self, index, name, offset, data):
        self.index = index
        self.name = name.decode(errors="replace")
        self.offset = offset  # of the entry header
        self.length = len(data)
        self.kind = binfmt.data_kind(data)
        self.certs = []  # CertInfo
        self.key = None  # key description for a private_key entry
        self.problems = []


class Report:
    def __init__(self, kind, size):
        self.kind = kind
        self.size = size
        self.entries = []
        self.problems = []  # bin-level (level, text)

    def all_problems(self):
        out = list(self.problems)
        for e in self.entries:
            out += e.problems
            for c in e.certs:
                out += c.problems
        return out

    @property
    def errors(self):
        return [t for lvl, t in self.all_problems() if lvl == ERROR]

    @property
    def warnings(self):
        return [t for lvl, t in self.all_problems() if lvl == WARNING]


def _inspect_key(entry, data):
    if entry.kind == binfmt.KIND_PEM:
        entry.problems.append((ERROR, "PEM key: axTLS takes only PKCS#1 RSAPrivateKey DER"))
        return None
    try:
        key = serialization.load_der_private_key(bytes(data), password=None)
    except Exception:
        entry.problems.append((ERROR, "not a private key (DER that does not parse)"))
        return None
    entry.key = _key_type(key.public_key())
    if not isinstance(key, rsa.RSAPrivateKey):
        entry.problems.append((ERROR, "%s key: axTLS takes RSA keys only" % entry.key))
        return key
    # PKCS#1 RSAPrivateKey is SEQUENCE { INTEGER version, INTEGER n, ...};
    # PKCS#8 PrivateKeyInfo has a SEQUENCE (the algorithm) as its second field.
    vlen = _der_len(data, 2 + ((data[1] & 0x7F) if data[1] & 0x80 else 0))
    second = 2 + ((data[1] & 0x7F) if data[1] & 0x80 else 0) + (vlen or 0)
    if second < len(data) and data[second] == 0x30:
        entry.problems.append((ERROR, "PKCS#8 key: axTLS takes only PKCS#1 RSAPrivateKey DER"))
    return key


def not_a_bin_text(data, kind):
    """The refusal for a plain certificate (DER or PEM) given where a bin belongs, else None."""
    raw = bytes(data)
    # A bin starts with an entry name; a certificate file with its PEM line or DER SEQUENCE.
    plain = raw.lstrip().startswith(b"-----BEGIN CERTIFICATE-----") or _load_der_cert(raw) is not None
    if not plain:
        return None
    if kind == "ca":
        return "this is a certificate, not a CA bin: build one with `espssl ca-bin build --out esp_ca_cert.bin FILE`"
    return ("this is a certificate, not a certificate bin: build one with `espssl cert-bin build --cert FILE "
            "--key KEY`")


def inspect_bin(data, kind="ca", now=None):
    """Walk a bin with the shared codec and describe every entry and problem.

    ``kind``: "ca" (esp_ca_cert.bin) or "cert" (esp_cert_private_key.bin).
    Format errors stop the walk and are reported; entries before them are kept.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    rep = Report(kind, len(data))
    plain = not_a_bin_text(data, kind)
    if plain:
        rep.problems.append((ERROR, plain))
        return rep
    mv = memoryview(data)
    end = 0
    try:
        for index, (name, off, n) in enumerate(binfmt.walk_bytes(mv)):
            e = Entry(index, name, off - binfmt.HEADER_LEN, mv[off : off + n])
            rep.entries.append(e)
            end = off + n
            _inspect_entry(e, mv[off : off + n], kind, now)
    except FormatError as err:
        rep.problems.append((ERROR, "format: %s" % err.msg))
        end = None
    if not rep.entries and end is not None:
        rep.problems.append((ERROR, "no entries (empty or erased)"))
    if end is not None and end < len(data):
        rest = bytes(mv[end:])
        if rest.strip(b"\xff"):
            rep.problems.append((WARNING, "trailing garbage: %d bytes after the end of the list are not "
                                 "erased flash (0xFF)" % len(rest)))  # fmt: skip
    names = [e.name for e in rep.entries]
    for n in sorted(set(x for x in names if names.count(x) > 1)):
        rep.problems.append((WARNING, "duplicate entry name %r" % n))
    if kind == "cert":
        _check_cert_bin(rep, mv)
    return rep


def _inspect_entry(e, data, kind, now):
    if kind == "cert" and e.name == KEY_NAME:
        _inspect_key(e, data)
        return
    if e.kind == binfmt.KIND_DER:
        total = _der_len(data)
        if _is_private_key_der(data):
            e.problems.append((ERROR, "private key" + (" in a CA bundle" if kind == "ca" else "")))
            return
        if total is not None and total < len(data):
            e.problems.append((ERROR, "trailing garbage: %d bytes after the DER certificate" % (len(data) - total)))
            data = data[:total]
        e.certs.append(CertInfo(data, now, role="ca" if kind == "ca" else "leaf"))
    elif e.kind == binfmt.KIND_PEM:
        if kind == "cert":
            e.problems.append((ERROR, "PEM certificate: axTLS takes only DER"))
        try:
            blocks = list(binfmt.pem_blocks(data))
        except FormatError as err:
            e.problems.append((ERROR, err.msg))
            return
        for label, der in blocks:
            if "PRIVATE KEY" in label:
                e.problems.append((ERROR, "private key (PEM %s)" % label + (" in a CA bundle" if kind == "ca" else "")))
            elif label != "CERTIFICATE":
                e.problems.append((ERROR, "PEM block %s is not a certificate" % label))
            else:
                e.certs.append(CertInfo(der, now, role="ca" if kind == "ca" else "leaf"))
        if not blocks:
            e.problems.append((ERROR, "PEM text without any block"))
    else:
        e.problems.append((ERROR, "not a certificate (neither DER nor PEM)"))


def _check_cert_bin(rep, mv):
    by_name = {e.name: e for e in rep.entries}
    for need in (CERT_NAME, KEY_NAME):
        if need not in by_name:
            rep.problems.append((ERROR, "no %r entry" % need))
    for e in rep.entries:
        if e.name not in (CERT_NAME, KEY_NAME):
            rep.problems.append((WARNING, "unexpected entry %r (the SDK reads only %r and %r)"
                                 % (e.name, CERT_NAME, KEY_NAME)))  # fmt: skip
    c, k = by_name.get(CERT_NAME), by_name.get(KEY_NAME)
    if c and k and c.certs and c.certs[0].cert is not None:
        data = mv[k.offset + binfmt.HEADER_LEN : k.offset + binfmt.HEADER_LEN + k.length]
        try:
            key = serialization.load_der_private_key(bytes(data), password=None)
        except Exception:
            return
        pub = c.certs[0].cert.public_key()
        if getattr(pub, "public_numbers", lambda: 0)() != getattr(key.public_key(), "public_numbers", lambda: 1)():
            rep.problems.append((ERROR, "the private key does not belong to the certificate"))


def format_report(rep, label):
    """The text `ca-bin inspect` / `cert-bin inspect` prints."""
    used = sum(binfmt.HEADER_LEN + e.length for e in rep.entries)
    lines = ["%s: %d entr%s, %d bytes used of %d in the file"
             % (label, len(rep.entries), "y" if len(rep.entries) == 1 else "ies", used, rep.size)]  # fmt: skip
    for e in rep.entries:
        if e.kind == binfmt.KIND_PEM:
            kind = "PEM, %d certificate%s" % (len(e.certs), "" if len(e.certs) == 1 else "s")
        elif e.key is not None:
            kind = "DER private key, %s" % e.key
        elif e.kind == binfmt.KIND_DER:
            kind = "DER, %d certificate%s" % (len(e.certs), "" if len(e.certs) == 1 else "s")
        else:
            kind = "unknown data"
        lines.append("[%d] %-31s at 0x%04x, %d bytes, %s" % (e.index, e.name, e.offset, e.length, kind))
        for lvl, text in e.problems:
            lines.append("    %s: %s" % (lvl.upper(), text))
        for c in e.certs:
            if c.cert is None:
                for lvl, text in c.problems:
                    lines.append("    %s: %s" % (lvl.upper(), text))
                continue
            lines.append("    subject:  %s" % c.subject)
            lines.append("    issuer:   %s%s" % (c.issuer, " (self-signed)" if c.self_signed else ""))
            if c.not_before is not None and c.not_after is not None:
                lines.append("    valid:    %s .. %s" % (_when(c.not_before), _when(c.not_after)))
            lines.append("    key:      %s, signature %s" % (c.key, c.sig))
            lines.append("    sha256:   %s" % c.sha256)
            for lvl, text in c.problems:
                lines.append("    %s: %s" % (lvl.upper(), text))
    for lvl, text in rep.problems:
        lines.append("%s: %s" % (lvl.upper(), text))
    ne, nw = len(rep.errors), len(rep.warnings)
    lines.append("%s: %d error%s, %d warning%s" % ("FAIL" if ne else "OK", ne, "" if ne == 1 else "s",
                                                  nw, "" if nw == 1 else "s"))  # fmt: skip
    return "\n".join(lines)


def check_usable(data, kind="ca", what="the file"):
    """The one verdict on a bin, used by `ca-bin build`, `flash-ca` and `flash-cert`.

    Raises FormatError with the first problem `inspect` counts as an error (a
    plain certificate, a key too weak for espconn, a broken self-signature,
    expired, ...); returns the Report (its warnings) otherwise.
    """
    plain = not_a_bin_text(data, kind)
    if plain:
        raise FormatError("wrong_file", "%s: %s" % (what, plain))
    from .flash import check_bin

    check_bin(data, kind, what)  # firmware images, keys in a CA bin, damaged format
    rep = inspect_bin(data, kind)
    errors = ["%s: %s" % (e.name, t) for e in rep.entries for lvl, t in e.problems + [p for c in e.certs
              for p in c.problems] if lvl == ERROR] + [t for lvl, t in rep.problems if lvl == ERROR]
    if errors:
        more = " (and %d more)" % (len(errors) - 1) if len(errors) > 1 else ""
        raise FormatError("unusable", "%s: %s%s; `espssl %s inspect` lists every problem"
                          % (what, errors[0], more, "ca-bin" if kind == "ca" else "cert-bin"))
    return rep


# --- CLI --------------------------------------------------------------------------------


def _warn_inputs(image, kind, what):
    rep = check_usable(image, kind, what)  # errors: refused, nothing written
    for lvl, text in rep.problems:
        print("warning: %s" % text, file=sys.stderr)
    for e in rep.entries:
        for lvl, text in e.problems + [p for c in e.certs for p in c.problems]:
            print("warning: %s: %s" % (e.name, text), file=sys.stderr)
    return rep


def cmd_ca_build(args):
    image = build_ca_bin(args.certs, keep_pem=args.keep_pem, max_bytes=args.max_bytes)
    if (Path(args.out).exists() or Path(args.out).is_symlink()) and not args.force:
        raise EspsslError("%s exists; use --force to overwrite it" % args.out)
    rep = _warn_inputs(image, "ca", "the bundle")
    write_output(args.out, image, force=args.force)
    ncert = sum(len(e.certs) for e in rep.entries)
    print("Wrote %s: %d entr%s, %d certificate%s, %d bytes (flash budget %s)"
          % (args.out, len(rep.entries), "y" if len(rep.entries) == 1 else "ies", ncert,
             "" if ncert == 1 else "s", len(image), args.max_bytes or "none"))  # fmt: skip
    for e in rep.entries:
        subj = ", ".join(c.subject for c in e.certs if c.cert is not None)
        print("  %-31s %s %5d bytes  %s" % (e.name, e.kind.upper(), e.length, subj))
    return 0


def cmd_cert_build(args):
    image = build_cert_bin(args.cert, args.key)
    if (Path(args.out).exists() or Path(args.out).is_symlink()) and not args.force:
        raise EspsslError("%s exists; use --force to overwrite it" % args.out)
    _warn_inputs(image, "cert", "the certificate bin")
    write_output(args.out, image, force=args.force, secret=True)
    print("Wrote %s: %d bytes (certificate + private_key, PKCS#1 DER; mode 0600)" % (args.out, len(image)))
    return 0


def _read_bin(path):
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise EspsslError("cannot read %s: %s" % (path, e.strerror or e)) from None


def cmd_inspect(args, kind):
    rep = inspect_bin(_read_bin(args.file), kind)
    print(format_report(rep, args.file))
    return 1 if rep.errors else 0


def register(subparsers):
    ca = subparsers.add_parser(
        "ca-bin", help="build or inspect esp_ca_cert.bin (the CA store)",
        description="Espressif's esp_ca_cert.bin: the CA certificates the device trusts.",
    )  # fmt: skip
    sub = ca.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    b = sub.add_parser(
        "build", help="make esp_ca_cert.bin from certificate files (like make_cacert.py)",
        description="One entry per file, named after the file (or NAME=FILE), in the order given. DER files "
        "are stored as they are; PEM files are converted to DER unless --keep-pem. Refused, writing "
        "nothing: anything `ca-bin inspect` counts as an error (the device could not use it).",
    )  # fmt: skip
    b.add_argument("--out", default=DEFAULT_CA_BIN, help="output file (default %s)" % DEFAULT_CA_BIN)
    b.add_argument("--keep-pem", action="store_true", help="store PEM inputs as PEM text")
    b.add_argument("--max-bytes", type=int_arg, default=SECTOR, help="flash budget in bytes (default 4096: one sector; 0: no limit)")
    b.add_argument("--force", action="store_true", help="overwrite an existing output file")
    b.add_argument("certs", nargs="*", metavar="[NAME=]CERT",
                   help="CA certificate files (DER or PEM); NAME=CERT names the entry (default: the file name)")
    b.set_defaults(func=cmd_ca_build)
    i = sub.add_parser("inspect", help="list and check the entries of a CA bin (exit 1 on errors)")
    i.add_argument("file")
    i.set_defaults(func=lambda a: cmd_inspect(a, "ca"))

    cb = subparsers.add_parser(
        "cert-bin", help="build or inspect esp_cert_private_key.bin (the device's certificate and key)",
        description="Espressif's esp_cert_private_key.bin: entries 'certificate' (DER) and "
        "'private_key' (PKCS#1 RSAPrivateKey DER), as make_cert.py made it.",
    )  # fmt: skip
    sub = cb.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="make esp_cert_private_key.bin from a certificate and its key")
    b.add_argument("--out", default=DEFAULT_CERT_BIN, help="output file (default %s)" % DEFAULT_CERT_BIN)
    b.add_argument("--cert", required=True, help="the device's certificate (DER or PEM)")
    b.add_argument("--key", required=True, help="its RSA private key (DER or PEM, PKCS#1 or PKCS#8)")
    b.add_argument("--force", action="store_true", help="overwrite an existing output file")
    b.set_defaults(func=cmd_cert_build)
    i = sub.add_parser("inspect", help="check a certificate bin (exit 1 on errors)")
    i.add_argument("file")
    i.set_defaults(func=lambda a: cmd_inspect(a, "cert"))
