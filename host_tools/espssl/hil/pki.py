"""Certificates for the loopback suite, one knob per failure (made with espssl.certs)."""

import datetime
import ipaddress

from espconn import binfmt


def _pem_files(dirpath, name, cert, key):
    from .. import certs

    crt = dirpath / (name + ".pem")
    crt.write_bytes(certs.cert_pem(cert))
    kf = dirpath / (name + ".key.pem")
    kf.write_bytes(certs.key_pem(key))
    return crt, kf


def load_ca(ca_dir):
    """The CA certificate and key ``espssl certs`` wrote to CA_DIR (ca.pem, ca.key.pem)."""
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from ..errors import EspsslError

    ca_dir = Path(ca_dir)
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((ca_dir / "ca.key.pem").read_bytes(), None)
    except OSError as e:
        raise EspsslError("--certs %s: cannot read %s (%s); give the directory `espssl certs --out` wrote"
                          % (ca_dir, e.filename, e.strerror)) from None
    except ValueError as e:
        raise EspsslError("--certs %s: ca.pem / ca.key.pem do not load: %s" % (ca_dir, e)) from None
    return cert, key


def make_pki(dirpath, host="127.0.0.1", ca_dir=None):
    """CA, wrong CA, and server certificates: good, expired, wrong name; the board's own.

    Returns a dict of paths (PEM, for CPython ssl), DER bytes (for the board) and
    the two CA bins (Espressif's esp_ca_cert.bin format, via binfmt).  With
    CA_DIR, the CA is the one ``espssl certs`` wrote there, so the suite runs
    against the CA bundle the user flashed.
    """
    from .. import certs

    now = datetime.datetime.now(datetime.timezone.utc)
    if ca_dir:  # the CA the user made (and flashed) with `espssl certs`
        ca, ca_key = load_ca(ca_dir)
    else:
        ca_key = certs.new_key(2048)
        ca = certs.make_cert("espssl HIL CA", ca_key, is_ca=True)
    wrong_key = certs.new_key(2048)
    wrong = certs.make_cert("espssl HIL other CA", wrong_key, is_ca=True)
    srv_key = certs.new_key(2048)
    ips = sorted({host, "127.0.0.1"})
    ip_objs = [ipaddress.ip_address(i) for i in ips]

    def leaf(cn, **kw):
        return certs.make_cert(cn, srv_key, ca, ca_key, **kw)

    out = {"dir": dirpath, "ca_der": certs.cert_der(ca), "wrong_ca_der": certs.cert_der(wrong)}
    out["ca_pem"], _ = _pem_files(dirpath, "ca", ca, ca_key)
    out["ca_bin"] = binfmt.entry("ca.cer", out["ca_der"])
    out["wrong_ca_bin"] = binfmt.entry("other_ca.cer", out["wrong_ca_der"])
    variants = {
        "server": leaf(host, ips=ip_objs),
        "expired": leaf(host, ips=ip_objs, not_before=now - datetime.timedelta(days=30),
                        not_after=now - datetime.timedelta(days=1)),
        "wrong_name": leaf("wrong.example", dns=["wrong.example"]),
    }
    for name, cert in variants.items():
        out[name] = _pem_files(dirpath, name, cert, srv_key)
    # The board's own server certificate (board as TLS server): DER + PKCS#1 DER key for axTLS.
    dev_key = certs.new_key(2048)
    dev = certs.make_cert(host, dev_key, ca, ca_key, ips=ip_objs)
    out["device_cert_der"] = certs.cert_der(dev)
    out["device_key_der"] = certs.key_der_pkcs1(dev_key)
    return out
