"""Certificates and keys for ESP8266 TLS: what the SDK's tools/makefile.sh made.

Library API (used by the tests, the HIL suite and ``espssl certs``):

    new_key(bits=2048)            -> RSAPrivateKey (512 needs no flag here; the CLI asks for one)
    make_cert(cn, key, issuer=None, issuer_key=None, *, is_ca=False, ...) -> x509.Certificate
    key_der_pkcs1(key)            -> PKCS#1 RSAPrivateKey DER (the only key form axTLS takes)
    cert_der(cert), cert_pem(cert) -> bytes
    make_set(out_dir, ip, ...)    -> {file name: Path}: CA, server (and client) files

Everything is made with ``cryptography``; no openssl shell-out.
"""

import datetime
import ipaddress
import os
import pathlib
import re
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import EspsslError

UTC = datetime.timezone.utc

# Key sizes `espssl certs` offers; 512 only with --allow-weak.
BITS_CHOICES = (512, 1024, 2048, 4096)
WEAK_BITS = 512

_HASHES = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "md5": hashes.MD5,
}

# --- keys ---------------------------------------------------------------------------

_SMALL_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


def _probable_prime(n, rounds=40):
    if n < 2:
        return False
    for p in (2,) + _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = 2 + secrets.randbelow(n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits, e):
    while True:
        # Top two bits set: the product of two such primes has exactly 2*bits bits.
        p = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if (p - 1) % e and _probable_prime(p):
            return p


def _small_key(bits, e=65537):
    # cryptography refuses to *generate* keys under 1024 bits, but still loads and
    # uses them; the SDK's devices met 512-bit keys, so tests need them.
    half = bits // 2
    while True:
        p, q = _prime(half, e), _prime(bits - half, e)
        if p != q and (p * q).bit_length() == bits:
            break
    if p < q:
        p, q = q, p
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d, dmp1=d % (p - 1), dmq1=d % (q - 1), iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )  # fmt: skip
    return numbers.private_key()


def new_key(bits=2048):
    """A fresh RSA private key of ``bits`` bits (public exponent 65537)."""
    bits = int(bits)
    if bits < 512:
        raise EspsslError("RSA keys under 512 bits are not supported (asked for %d)" % bits)
    if bits < 1024:
        return _small_key(bits)
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_der_pkcs1(key):
    """PKCS#1 RSAPrivateKey DER of ``key``: the form axTLS on the ESP8266 accepts."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise EspsslError("axTLS needs an RSA private key, not %s" % type(key).__name__)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def key_pem(key):
    """The private key as unencrypted PEM (PKCS#1 "RSA PRIVATE KEY" for RSA keys)."""
    fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


# --- certificates -------------------------------------------------------------------


def _key_usage(is_ca):
    # CA: sign certificates (and CRLs); leaf: RSA signature and RSA key exchange
    # (axTLS offers only RSA key transport, so keyEncipherment is needed).
    return x509.KeyUsage(
        digital_signature=not is_ca,
        content_commitment=False,
        key_encipherment=not is_ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    )


def _aware(dt):
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def make_cert(
    cn,
    key,
    issuer=None,
    issuer_key=None,
    *,
    is_ca=False,
    path_len=None,
    dns=(),
    ips=(),
    days=3650,
    not_before=None,
    not_after=None,
    hash_name="sha256",
    key_usage=None,
    extensions=(),
    serial=None,
):
    """One X.509 v3 certificate for ``key`` (a private or public key).

    Args:
        cn: subject commonName.
        issuer, issuer_key: the issuing CA's certificate and private key;
            both None for a self-signed certificate (signed by ``key``).
        is_ca, path_len: basicConstraints (always present, critical).
        dns, ips: subjectAltName entries (strings or ipaddress objects);
            no SAN extension when both are empty.
        days: validity from ``not_before`` (default: now - 5 minutes), unless
            ``not_after`` is given.
        hash_name: "sha256" (default), "sha1", "sha384", "sha512", "sha224", "md5".
        key_usage: None = keyCertSign+cRLSign for a CA, digitalSignature+
            keyEncipherment for a leaf; False = no keyUsage; or a
            ``x509.KeyUsage`` (critical).
        extensions: extra ``(ExtensionType, critical)`` pairs; one with the
            same type as a default replaces it.
        serial: serial number (default: random).
    Returns:
        ``cryptography.x509.Certificate``.
    """
    if hash_name not in _HASHES:
        raise EspsslError("unknown hash %r (one of %s)" % (hash_name, ", ".join(sorted(_HASHES))))
    if (issuer is None) != (issuer_key is None):
        raise EspsslError("issuer and issuer_key go together")
    pub = key.public_key() if hasattr(key, "public_key") else key
    signer = issuer_key if issuer is not None else key
    if not hasattr(signer, "sign"):
        raise EspsslError("a self-signed certificate needs the private key")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name = issuer.subject if issuer is not None else subject
    if not_before is None:
        not_before = datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    not_before = _aware(not_before)
    not_after = _aware(not_after) if not_after is not None else not_before + datetime.timedelta(days=days)

    exts = [(x509.BasicConstraints(ca=bool(is_ca), path_length=path_len if is_ca else None), True)]
    if key_usage is None:
        exts.append((_key_usage(is_ca), True))
    elif key_usage is not False:
        exts.append((key_usage, True))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        exts.append((x509.SubjectAlternativeName(sans), False))
    exts.append((x509.SubjectKeyIdentifier.from_public_key(pub), False))
    if issuer is not None:
        try:
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
        exts.append((aki, False))
    extra = list(extensions)
    extra_types = {type(e) for e, _ in extra}
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(pub)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for ext, critical in [e for e in exts if type(e[0]) not in extra_types] + extra:
        builder = builder.add_extension(ext, critical=critical)
    if hash_name in _LEGACY_OIDS:
        return _sign_legacy(builder, signer, hash_name)
    # Ed25519/Ed448 sign with no separate hash.
    algo = None if type(signer).__name__.startswith("Ed") else _HASHES[hash_name]()
    return builder.sign(signer, algo)


# cryptography no longer signs certificates with SHA-1 or MD5, but the SDK's
# makefile.sh did and old peers still want them.  Sign with SHA-256, then swap the
# algorithm OID (same length: only its last arc differs) in the TBS and the outer
# AlgorithmIdentifier, and replace the signature value (same length: the modulus).
_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b0500")  # sha256WithRSAEncryption, NULL
_LEGACY_OIDS = {
    "sha1": bytes.fromhex("06092a864886f70d0101050500"),  # sha1WithRSAEncryption, NULL
    "md5": bytes.fromhex("06092a864886f70d0101040500"),  # md5WithRSAEncryption, NULL
}


def _tlv(buf, off):
    """(value offset, end) of the DER TLV at ``off`` (definite lengths)."""
    n = buf[off + 1]
    if n < 0x80:
        return off + 2, off + 2 + n
    k = n & 0x7F
    length = int.from_bytes(buf[off + 2 : off + 2 + k], "big")
    return off + 2 + k, off + 2 + k + length


def _sign_legacy(builder, signer, hash_name):
    from cryptography.hazmat.primitives.asymmetric import padding

    if not isinstance(signer, rsa.RSAPrivateKey):
        raise EspsslError("%s signatures are made for RSA keys only" % hash_name)
    der = bytearray(cert_der(builder.sign(signer, hashes.SHA256())))
    tbs_v, _ = _tlv(der, 0)  # Certificate ::= SEQUENCE { tbs, algorithm, signature }
    tbs_vo, tbs_end = _tlv(der, tbs_v)
    alg_vo, alg_end = _tlv(der, tbs_end)
    sig_vo, sig_end = _tlv(der, alg_end)
    if der[tbs_end:alg_end] != b"\x30\x0d" + _SHA256_RSA or der.count(_SHA256_RSA) != 2:
        raise EspsslError("unexpected certificate layout while re-signing with %s" % hash_name)
    new_oid = _LEGACY_OIDS[hash_name]
    der[:] = der.replace(_SHA256_RSA, new_oid)
    tbs = bytes(der[tbs_v:tbs_end])
    sig = signer.sign(tbs, padding.PKCS1v15(), _HASHES[hash_name]())
    # BIT STRING: one byte of unused bits (0), then the signature, same length as before.
    if len(sig) != sig_end - sig_vo - 1:
        raise EspsslError("signature length changed while re-signing with %s" % hash_name)
    der[sig_vo + 1 : sig_end] = sig
    return x509.load_der_x509_certificate(bytes(der))


# --- the set `espssl certs` writes ----------------------------------------------------

_DNS_RE = re.compile(r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def _as_list(v):
    if v is None:
        return []
    if isinstance(v, (str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return [v]
    return list(v)


def set_files(client=False):
    """File names make_set writes, in order, and whether each is a private key."""
    files = [
        ("ca.pem", False), ("ca.der", False), ("ca.key.pem", True),
        ("server.pem", False), ("server.der", False), ("server.key.der", True), ("server.key.pem", True),
    ]  # fmt: skip
    if client:
        files += [("client.pem", False), ("client.der", False), ("client.key.der", True), ("client.key.pem", True)]
    return files


def _write_all(out_dir, contents, secret):
    """Write every file or none: temp files first, then renames."""
    temps = []
    try:
        for name, data in contents.items():
            tmp = out_dir / (".%s.%s.tmp" % (name, secrets.token_hex(4)))
            fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if name in secret else 0o644)
            temps.append((tmp, out_dir / name))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            if name in secret:
                os.chmod(str(tmp), 0o600)  # whatever the umask
        for tmp, final in temps:
            os.replace(str(tmp), str(final))
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()


def make_set(out_dir, ip, dns=None, bits=2048, sha1=False, days=3650, client=False, force=False, allow_weak=False):
    """A CA, a server certificate (and a client one) signed by it, written to ``out_dir``.

    The server certificate carries ``ip`` (and ``dns`` names) in subjectAltName and
    in its CN (the first DNS name if any, else the IP; the SDK used the IP).
    Files: ca.pem ca.der ca.key.pem; server.pem server.der server.key.der (PKCS#1
    DER, for axTLS) server.key.pem (for host TLS peers); with ``client`` the same
    four for client.  Private keys get mode 0600.  Nothing is written if any
    target exists and ``force`` is false.

    Returns:
        dict file name -> Path, in the order written.
    """
    ips = _as_list(ip)
    if not ips:
        raise EspsslError("an IP address is needed (--ip)")
    ip_objs = []
    for i in ips:
        try:
            ip_objs.append(ipaddress.ip_address(i))
        except ValueError:
            raise EspsslError("not an IP address: %r" % (i,)) from None
    names = [str(d) for d in _as_list(dns)]
    for d in names:
        if not _DNS_RE.match(d) or len(d) > 253:
            raise EspsslError("not a DNS name: %r" % d)
    bits = int(bits)
    if bits not in BITS_CHOICES:
        raise EspsslError("key size must be one of %s, not %d" % (", ".join(map(str, BITS_CHOICES)), bits))
    if bits == WEAK_BITS and not allow_weak:
        raise EspsslError("512-bit RSA keys are breakable; add --allow-weak if you really want them")
    if int(days) < 1:
        raise EspsslError("--days must be at least 1, not %s" % days)

    out = pathlib.Path(out_dir)
    files = set_files(client)
    if out.exists() and not out.is_dir():
        raise EspsslError("%s exists and is not a directory" % out)
    if not force:
        there = [n for n, _ in files if (out / n).exists() or (out / n).is_symlink()]
        if there:
            raise EspsslError("%s already holds %s; use --force to overwrite" % (out, ", ".join(there)))

    hname = "sha1" if sha1 else "sha256"
    tag = secrets.token_hex(4)
    ca_key = new_key(bits)
    ca = make_cert("espssl CA %s" % tag, ca_key, is_ca=True, path_len=0, days=days, hash_name=hname)
    srv_key = new_key(bits)
    srv = make_cert(
        names[0] if names else str(ip_objs[0]), srv_key, ca, ca_key, dns=names, ips=ip_objs, days=days,
        hash_name=hname, extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)],
    )  # fmt: skip
    contents = {
        "ca.pem": cert_pem(ca), "ca.der": cert_der(ca), "ca.key.pem": key_pem(ca_key),
        "server.pem": cert_pem(srv), "server.der": cert_der(srv),
        "server.key.der": key_der_pkcs1(srv_key), "server.key.pem": key_pem(srv_key),
    }  # fmt: skip
    if client:
        cli_key = new_key(bits)
        cli = make_cert(
            "espssl client %s" % tag, cli_key, ca, ca_key, days=days, hash_name=hname,
            extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        )  # fmt: skip
        contents.update({
            "client.pem": cert_pem(cli), "client.der": cert_der(cli),
            "client.key.der": key_der_pkcs1(cli_key), "client.key.pem": key_pem(cli_key),
        })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    _write_all(out, contents, {n for n, s in files if s})
    return {n: out / n for n, _ in files}


# --- CLI --------------------------------------------------------------------------------


def _describe(cert):
    key = cert.public_key()
    size = getattr(key, "key_size", None)
    algo = cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else "-"
    return "%s, RSA-%s, %s, until %s" % (
        cert.subject.rfc4514_string(), size, algo, cert.not_valid_after_utc.strftime("%Y-%m-%d"),
    )  # fmt: skip


def cmd_certs(args):
    made = make_set(
        args.out, args.ip, dns=args.dns, bits=args.bits, sha1=args.sha1, days=args.days,
        client=args.client, force=args.force, allow_weak=args.allow_weak,
    )  # fmt: skip
    what = {
        "ca.pem": "CA certificate (PEM)", "ca.der": "CA certificate (DER: for esp_ca_cert.bin)",
        "ca.key.pem": "CA private key (PEM, keep it secret)",
        "server.pem": "server certificate (PEM)", "server.der": "server certificate (DER: for axTLS)",
        "server.key.der": "server private key (PKCS#1 DER: for axTLS)",
        "server.key.pem": "server private key (PEM: for host TLS peers)",
        "client.pem": "client certificate (PEM)", "client.der": "client certificate (DER: for axTLS)",
        "client.key.der": "client private key (PKCS#1 DER: for axTLS)",
        "client.key.pem": "client private key (PEM: for host TLS peers)",
    }  # fmt: skip
    for name, path in made.items():
        print("Wrote %-40s %s" % (path, what[name]))
    for name in ("ca", "server", "client"):
        if name + ".der" in made:
            cert = x509.load_der_x509_certificate(made[name + ".der"].read_bytes())
            print("%-6s %s" % (name + ":", _describe(cert)))
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "certs",
        help="make a CA and a server (and client) certificate signed by it",
        description="Make a CA and server (and client) certificates signed by it, with the server's "
        "IP (and DNS names) in CN and subjectAltName, and keys in the PKCS#1 DER form axTLS needs.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write into (created if missing)")
    p.add_argument("--ip", required=True, help="the server's IP address (e.g. 192.168.4.1)")
    p.add_argument("--dns", action="append", metavar="NAME", help="a DNS name for the server (repeatable)")
    p.add_argument("--bits", type=int, default=2048, choices=BITS_CHOICES, help="RSA key size (default 2048)")
    p.add_argument("--sha1", action="store_true", help="sign with SHA-1 instead of SHA-256 (old peers)")
    p.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    p.add_argument("--client", action="store_true", help="also make a client certificate")
    p.add_argument("--allow-weak", action="store_true", help="permit --bits 512")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_certs)
