"""A small test PKI on top of espssl.certs, in the manner of trustme.

    root = CA()                                   # self-signed RSA CA
    inter = root.child_ca()                       # intermediate
    leaf = inter.issue("127.0.0.1", "esp.example")  # IPs and DNS names go to the SAN
    leaf.der, inter.der, root.der                 # DER bytes
    leaf.pem, leaf.key_der                        # PEM, PKCS#1 DER key (axTLS form)

Sane defaults, one knob per way to fail: ``not_before``/``not_after``
(expiry), names / ``cn`` / ``san=False`` (name checks), ``is_ca`` and
``path_len`` (CA flags), ``key_usage``, ``hash_name``, ``bits``, extra
``extensions``.  Dates are fixed (VALID_FROM..VALID_TO around NOW), never taken
from the clock, so tests pass ``now=NOW`` and stay deterministic.

Keys are expensive, so they come from a small pool per size: two CAs made
here hold different keys unless more than POOL certificates of one size are
alive in one test.  ``fresh_key=True`` asks for a key never handed out before.

The SDK's own recipe (tools/makefile.sh: openssl, 1024-bit RSA, SHA-1, v1
certificates, CN = IP and no SAN) is reproduced by ``makefile_sh(dir, ip)``.
"""

import datetime
import ipaddress
import pathlib
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from espssl import certs

UTC = datetime.timezone.utc
# The verifier tests' fixed "now" and the default validity window around it.
NOW_DT = datetime.datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW = int(NOW_DT.timestamp())
VALID_FROM = datetime.datetime(2026, 1, 1, tzinfo=UTC)
VALID_TO = datetime.datetime(2036, 1, 1, tzinfo=UTC)

POOL = 8
_pool = {}  # bits -> list of keys
_next = {}  # bits -> next index


def key(bits=2048, fresh=False):
    """An RSA key of ``bits`` from the pool (``fresh``: a new one)."""
    keys = _pool.setdefault(bits, [])
    if fresh:
        k = certs.new_key(bits)
        keys.append(k)
        return k
    i = _next.get(bits, 0)
    _next[bits] = (i + 1) % POOL
    while len(keys) <= i:
        keys.append(certs.new_key(bits))
    return keys[i]


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


class Cert:
    """One issued certificate with its key."""

    def __init__(self, cert, key):
        self.cert = cert
        self.key = key

    @property
    def der(self):
        return certs.cert_der(self.cert)

    @property
    def pem(self):
        return certs.cert_pem(self.cert)

    @property
    def key_der(self):
        return certs.key_der_pkcs1(self.key)

    def write(self, path):
        """Write the DER to ``path``; return the path."""
        path = pathlib.Path(path)
        path.write_bytes(self.der)
        return path


def _split(names):
    dns, ips = [], []
    for n in names:
        try:
            ips.append(ipaddress.ip_address(n))
        except ValueError:
            dns.append(n)
    return dns, ips


class CA(Cert):
    """A certificate authority that issues children and leaves."""

    _count = 0

    def __init__(
        self,
        cn=None,
        parent=None,
        *,
        bits=2048,
        key=None,
        fresh_key=False,
        is_ca=True,
        path_len=None,
        key_usage=None,
        hash_name="sha256",
        not_before=VALID_FROM,
        not_after=VALID_TO,
        extensions=(),
    ):
        CA._count += 1
        if cn is None:
            cn = "espssl test CA %d" % CA._count
        k = key if key is not None else globals()["key"](bits, fresh_key)
        cert = certs.make_cert(
            cn,
            k,
            issuer=parent.cert if parent else None,
            issuer_key=parent.key if parent else None,
            is_ca=is_ca,
            path_len=path_len,
            hash_name=hash_name,
            key_usage=key_usage,
            not_before=not_before,
            not_after=not_after,
            extensions=extensions,
        )
        super().__init__(cert, k)
        self.parent = parent

    def child_ca(self, cn=None, **knobs):
        """An intermediate CA signed by this one (same knobs as CA())."""
        return CA(cn, self, **knobs)

    def issue(
        self,
        *names,
        cn=None,
        san=True,
        bits=2048,
        key=None,
        fresh_key=False,
        is_ca=False,
        key_usage=None,
        hash_name="sha256",
        not_before=VALID_FROM,
        not_after=VALID_TO,
        extensions=(),
    ):
        """A leaf for ``names`` (IPs and DNS names, in the SAN unless ``san=False``)."""
        dns, ips = _split(names) if san else ((), ())
        if cn is None:
            cn = names[0] if names else "espssl test leaf"
        k = key if key is not None else globals()["key"](bits, fresh_key)
        cert = certs.make_cert(
            cn,
            k,
            issuer=self.cert,
            issuer_key=self.key,
            is_ca=is_ca,
            dns=tuple(dns),
            ips=tuple(ips),
            hash_name=hash_name,
            key_usage=key_usage,
            not_before=not_before,
            not_after=not_after,
            extensions=extensions,
        )
        return Cert(cert, k)


def chain(*parts):
    """DER bytes of each part (Cert objects or bytes), in the given order."""
    return [p if isinstance(p, (bytes, bytearray)) else p.der for p in parts]


# --- the SDK's makefile.sh recipe, with the openssl CLI --------------------------

_CA_CONF = """[ req ]
distinguished_name     = req_distinguished_name
prompt                 = no

[ req_distinguished_name ]
 O                      = %s Dodgy Certificate Authority
"""

_SERVER_CONF = """[ req ]
distinguished_name     = req_distinguished_name
prompt                 = no

[ req_distinguished_name ]
 O                      = %s
 CN                     = %s
"""


def _openssl(cwd, *args):
    subprocess.run(("openssl",) + args, cwd=str(cwd), check=True, capture_output=True)


def makefile_sh(out_dir, ip="127.0.0.1", project="espressif", bits=1024, days=5000):
    """Run the SDK makefile.sh steps for a CA and a server certificate.

    openssl genrsa (1024) -> req -> ``x509 -req -sha1 -signkey`` (self-signed v1
    CA) -> ``x509 -req -sha1 -CA`` (v1 server certificate, CN = ip, no SAN).
    Returns dict name -> DER bytes: "ca", "server", and "server_key" (PKCS#1 DER).
    openssl dates the certificates from the real clock: tests take their "now"
    from the certificate (see not_before()), not from the clock.
    """
    d = pathlib.Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca_cert.conf").write_text(_CA_CONF % project)
    (d / "server_cert.conf").write_text(_SERVER_CONF % (project, ip))
    _openssl(d, "genrsa", "-out", "TLS.ca_key.pem", str(bits))
    _openssl(d, "genrsa", "-out", "TLS.key_1024.pem", str(bits))
    _openssl(d, "rsa", "-in", "TLS.key_1024.pem", "-out", "TLS.key_1024", "-outform", "DER", "-traditional")
    _openssl(d, "req", "-out", "TLS.ca_x509.req", "-key", "TLS.ca_key.pem", "-new", "-config", "./ca_cert.conf")
    _openssl(d, "req", "-out", "TLS.x509_1024.req", "-key", "TLS.key_1024.pem", "-new", "-config", "./server_cert.conf")
    _openssl(d, "x509", "-req", "-in", "TLS.ca_x509.req", "-out", "TLS.ca_x509.pem", "-sha1", "-days", str(days),
             "-signkey", "TLS.ca_key.pem")  # fmt: skip
    _openssl(d, "x509", "-req", "-in", "TLS.x509_1024.req", "-out", "TLS.x509_1024.pem", "-sha1", "-CAcreateserial",
             "-days", str(days), "-CA", "TLS.ca_x509.pem", "-CAkey", "TLS.ca_key.pem")  # fmt: skip
    _openssl(d, "x509", "-in", "TLS.ca_x509.pem", "-outform", "DER", "-out", "TLS.ca_x509.cer")
    _openssl(d, "x509", "-in", "TLS.x509_1024.pem", "-outform", "DER", "-out", "TLS.x509_1024.cer")
    return {
        "ca": (d / "TLS.ca_x509.cer").read_bytes(),
        "server": (d / "TLS.x509_1024.cer").read_bytes(),
        "server_key": (d / "TLS.key_1024").read_bytes(),
    }


def openssl_v3_chain(out_dir, ip="127.0.0.1", bits=2048, digest="sha256"):
    """A root and a leaf with v3 extensions made by the openssl CLI (req -x509, x509 -req -extfile).

    Returns dict name -> DER bytes: "ca", "server".
    """
    d = pathlib.Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:localhost\n" % ip
    )
    _openssl(d, "req", "-x509", "-newkey", "rsa:%d" % bits, "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-subj", "/CN=openssl test root", "-days", "3650", "-" + digest,
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:1",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _openssl(d, "req", "-new", "-newkey", "rsa:%d" % bits, "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=%s" % ip)  # fmt: skip
    _openssl(d, "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "srv.pem", "-days", "825", "-" + digest, "-extfile", "ext.cnf")  # fmt: skip
    _openssl(d, "x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der")
    _openssl(d, "x509", "-in", "srv.pem", "-outform", "DER", "-out", "srv.der")
    return {"ca": (d / "ca.der").read_bytes(), "server": (d / "srv.der").read_bytes()}


def not_before(der):
    """notBefore of a DER certificate, unix seconds (read from the certificate, not the clock)."""
    return int(x509.load_der_x509_certificate(der).not_valid_before_utc.timestamp())


def not_after(der):
    return int(x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp())


# --- raw DER edits, re-signed: one knob per malformation --------------------------
# cryptography refuses to write most malformed certificates; these helpers edit a
# good certificate's tbsCertificate fields as DER and sign the result again, so
# only the edited field is wrong.

SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")  # sha256WithRSAEncryption, NULL parameters


def tlv(tag, content):
    """One DER TLV (definite, shortest length)."""
    n = len(content)
    if n < 0x80:
        head = bytes([n])
    else:
        k = (n.bit_length() + 7) // 8
        head = bytes([0x80 | k]) + n.to_bytes(k, "big")
    return bytes([tag]) + head + bytes(content)


def _span(buf, off):
    # (content offset, end) of the TLV at off
    n = buf[off + 1]
    p = off + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[p : p + k], "big")
        p += k
    return p, p + n


def value(t):
    """The content bytes of one TLV."""
    p, e = _span(t, 0)
    return t[p:e]


def parts(content):
    """The TLVs (bytes, tags included) that fill ``content``."""
    out, off = [], 0
    while off < len(content):
        _p, e = _span(content, off)
        out.append(bytes(content[off:e]))
        off = e
    return out


def tbs_fields(der):
    """The tbsCertificate's fields of a DER certificate, each a TLV."""
    return parts(value(parts(value(der))[0]))


def resign(fields, key, alg=SHA256_RSA):
    """A certificate of these tbsCertificate fields, signed by ``key`` (PKCS#1 v1.5, SHA-256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    tbs = tlv(0x30, b"".join(fields))
    sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return tlv(0x30, tbs + alg + tlv(0x03, b"\x00" + sig))


def extensions(fields):
    """The Extension TLVs of tbsCertificate ``fields`` (the [3] field last)."""
    assert fields[-1][0] == 0xA3
    return parts(value(value(fields[-1])))


def with_extensions(fields, exts):
    """``fields`` with the extensions replaced by ``exts`` (Extension TLVs)."""
    return fields[:-1] + [tlv(0xA3, tlv(0x30, b"".join(exts)))]


def ext(oid, inner, critical=None):
    """An Extension TLV: ``oid`` content bytes, ``critical`` None (absent) or the BOOLEAN's byte."""
    crit = b"" if critical is None else tlv(0x01, bytes([critical]))
    return tlv(0x30, tlv(0x06, oid) + crit + tlv(0x04, inner))


def ext_oid(e):
    """The OID content bytes of an Extension TLV."""
    return value(parts(value(e))[0])
