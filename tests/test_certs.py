"""espssl.certs and `espssl certs`: keys, certificates, the CA/server/client set on disk."""

import datetime
import ipaddress
import os
import pathlib
import socket
import ssl
import stat
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from espssl import certs
from espssl.cli import main
from espssl.errors import EspsslError

UTC = datetime.timezone.utc
BASE_FILES = ["ca.pem", "ca.der", "ca.key.pem", "server.pem", "server.der", "server.key.der", "server.key.pem"]
CLIENT_FILES = ["client.pem", "client.der", "client.key.der", "client.key.pem"]
KEY_FILES = {"ca.key.pem", "server.key.der", "server.key.pem", "client.key.der", "client.key.pem"}


def run(argv):
    """Run espssl in-process; return its exit code (output goes to capsys)."""
    with pytest.raises(SystemExit) as ex:
        main(argv)
    return ex.value.code


def cn_of(cert):
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def san_of(cert):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)


def signed_by(cert, issuer):
    """True if issuer's key verifies cert's signature (PKCS#1 v1.5, the cert's own hash)."""
    try:
        issuer.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
        )
        return True
    except Exception:
        return False


# --- library ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [512, 768, 1024])
def test_new_key_sizes(bits):
    k = certs.new_key(bits)
    assert isinstance(k, rsa.RSAPrivateKey)
    assert k.key_size == bits
    assert k.public_key().public_numbers().e == 65537
    # The key really works: sign and verify.
    sig = k.sign(b"espssl", padding.PKCS1v15(), hashes.SHA256())
    k.public_key().verify(sig, b"espssl", padding.PKCS1v15(), hashes.SHA256())


def test_new_key_refuses_tiny():
    with pytest.raises(EspsslError):
        certs.new_key(256)


def test_key_der_pkcs1_is_rsaprivatekey():
    k = certs.new_key(1024)
    der = certs.key_der_pkcs1(k)
    # RSAPrivateKey ::= SEQUENCE { version INTEGER (0), modulus INTEGER, ... } (PKCS#1),
    # not PKCS#8's SEQUENCE { version, AlgorithmIdentifier SEQUENCE, OCTET STRING }.
    assert der[0] == 0x30
    hdr = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    assert der[hdr : hdr + 3] == b"\x02\x01\x00"
    assert der[hdr + 3] == 0x02  # modulus INTEGER right after the version
    back = serialization.load_der_private_key(der, None)
    assert back.private_numbers() == k.private_numbers()
    with pytest.raises(EspsslError):
        certs.key_der_pkcs1(ec.generate_private_key(ec.SECP256R1()))


def test_make_cert_self_signed_ca_defaults():
    k = certs.new_key(1024)
    ca = certs.make_cert("Test CA", k, is_ca=True, path_len=1)
    assert cn_of(ca) == "Test CA"
    assert ca.issuer == ca.subject
    assert ca.signature_hash_algorithm.name == "sha256"
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ca.verify_directly_issued_by(ca)
    now = datetime.datetime.now(UTC)
    assert ca.not_valid_before_utc <= now
    assert abs((ca.not_valid_after_utc - ca.not_valid_before_utc) - datetime.timedelta(days=3650)) < datetime.timedelta(seconds=1)
    assert certs.cert_der(ca) == ca.public_bytes(serialization.Encoding.DER)
    assert certs.cert_pem(ca).startswith(b"-----BEGIN CERTIFICATE-----\n")


def test_make_cert_leaf_knobs():
    ca_key, leaf_key = certs.new_key(1024), certs.new_key(1024)
    ca = certs.make_cert("CA", ca_key, is_ca=True)
    nb = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    na = datetime.datetime(2031, 1, 1, tzinfo=UTC)
    leaf = certs.make_cert(
        "leaf", leaf_key, ca, ca_key, dns=("esp.example",), ips=("192.168.4.1", "::1"),
        not_before=nb, not_after=na, serial=4242,
    )  # fmt: skip
    assert leaf.issuer == ca.subject and leaf.serial_number == 4242
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (nb, na)
    dns, ips = san_of(leaf)
    assert dns == ["esp.example"]
    assert ips == [ipaddress.ip_address("192.168.4.1"), ipaddress.ip_address("::1")]
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    leaf.verify_directly_issued_by(ca)
    other = certs.make_cert("CA", certs.new_key(1024), is_ca=True)
    with pytest.raises(Exception):
        leaf.verify_directly_issued_by(other)  # same name, other key: signature fails
    # days counts from not_before
    d = certs.make_cert("d", leaf_key, ca, ca_key, not_before=nb, days=10)
    assert d.not_valid_after_utc == nb + datetime.timedelta(days=10)


def test_make_cert_key_usage_and_extensions():
    k = certs.new_key(1024)
    no_ku = certs.make_cert("x", k, key_usage=False)
    with pytest.raises(x509.ExtensionNotFound):
        no_ku.extensions.get_extension_for_class(x509.KeyUsage)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    bc = x509.BasicConstraints(ca=True, path_length=3)
    c = certs.make_cert("x", k, extensions=[(eku, True), (bc, False)])
    got = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert got.critical and list(got.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # an extra extension of a default's type replaces the default (no duplicate)
    b = c.extensions.get_extension_for_class(x509.BasicConstraints)
    assert not b.critical and b.value.path_length == 3
    assert sum(1 for e in c.extensions if isinstance(e.value, x509.BasicConstraints)) == 1


@pytest.mark.parametrize("hname", ["sha1", "md5", "sha256", "sha384"])
def test_make_cert_hashes(hname):
    ca_key, k = certs.new_key(1024), certs.new_key(1024)
    ca = certs.make_cert("CA", ca_key, is_ca=True, hash_name=hname)
    leaf = certs.make_cert("leaf", k, ca, ca_key, ips=["127.0.0.1"], hash_name=hname)
    for c in (ca, leaf):
        assert c.signature_hash_algorithm.name == hname
    assert signed_by(leaf, ca) and signed_by(ca, ca)
    assert not signed_by(leaf, certs.make_cert("o", k))  # other key: no
    # The re-signed DER is still one well-formed certificate that openssl accepts.
    back = x509.load_der_x509_certificate(certs.cert_der(leaf))
    assert back.tbs_certificate_bytes == leaf.tbs_certificate_bytes


def test_sha1_chain_openssl_verifies(tmp_path):
    ca_key, k = certs.new_key(1024), certs.new_key(1024)
    ca = certs.make_cert("SHA1 CA", ca_key, is_ca=True, hash_name="sha1")
    leaf = certs.make_cert("127.0.0.1", k, ca, ca_key, ips=["127.0.0.1"], hash_name="sha1")
    (tmp_path / "ca.pem").write_bytes(certs.cert_pem(ca))
    (tmp_path / "leaf.pem").write_bytes(certs.cert_pem(leaf))
    try:
        p = subprocess.run(
            ["openssl", "verify", "-auth_level", "0", "-CAfile", "ca.pem", "leaf.pem"],
            cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("no openssl CLI")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "leaf.pem: OK" in p.stdout


def test_make_cert_ec_key_and_errors():
    ek = ec.generate_private_key(ec.SECP256R1())
    c = certs.make_cert("ec", ek, is_ca=True)
    c.verify_directly_issued_by(c)
    with pytest.raises(EspsslError):
        certs.make_cert("x", certs.new_key(1024), hash_name="sha3")
    with pytest.raises(EspsslError):
        certs.make_cert("x", certs.new_key(1024), issuer=c)  # issuer without its key


# --- the set on disk ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("set")
    made = certs.make_set(d, "192.168.4.1", dns="esp.example", client=True)
    return d, made


def load(d, name):
    return x509.load_der_x509_certificate((d / (name + ".der")).read_bytes())


def test_set_files_and_modes(full_set):
    d, made = full_set
    assert list(made) == BASE_FILES + CLIENT_FILES
    assert sorted(p.name for p in d.iterdir()) == sorted(BASE_FILES + CLIENT_FILES)
    for name in made:
        mode = stat.S_IMODE(os.stat(d / name).st_mode)
        if name in KEY_FILES:
            assert mode == 0o600, name
        else:
            assert mode & 0o077 != 0o077  # not world-writable noise; certificates are public
    for who in ("ca", "server", "client"):
        der = (d / (who + ".der")).read_bytes()
        pem_cert = x509.load_pem_x509_certificate((d / (who + ".pem")).read_bytes())
        assert pem_cert.public_bytes(serialization.Encoding.DER) == der


def test_set_chain_names_and_keys(full_set):
    d, _ = full_set
    ca, srv, cli = load(d, "ca"), load(d, "server"), load(d, "client")
    ca.verify_directly_issued_by(ca)
    srv.verify_directly_issued_by(ca)
    cli.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cn_of(srv) == "esp.example"
    dns, ips = san_of(srv)
    assert dns == ["esp.example"] and ips == [ipaddress.ip_address("192.168.4.1")]
    for c in (ca, srv, cli):
        assert c.signature_hash_algorithm.name == "sha256"
        assert c.public_key().key_size == 2048
    # keys: PKCS#1 DER and PEM of the same key, matching the certificate
    for who, cert in (("server", srv), ("client", cli)):
        kd = serialization.load_der_private_key((d / (who + ".key.der")).read_bytes(), None)
        kp = serialization.load_pem_private_key((d / (who + ".key.pem")).read_bytes(), None)
        assert kd.private_numbers() == kp.private_numbers()
        assert kd.public_key().public_numbers() == cert.public_key().public_numbers()
        assert (d / (who + ".key.der")).read_bytes() == certs.key_der_pkcs1(kd)
    cak = serialization.load_pem_private_key((d / "ca.key.pem").read_bytes(), None)
    assert cak.public_key().public_numbers() == ca.public_key().public_numbers()
    # a real verifier: the server certificate validates for its IP and DNS name, not others
    store = Store([ca])
    now = datetime.datetime.now(UTC)
    for name in (x509.IPAddress(ipaddress.ip_address("192.168.4.1")), x509.DNSName("esp.example")):
        v = PolicyBuilder().store(store).time(now).build_server_verifier(name)
        v.verify(srv, [])
    v = PolicyBuilder().store(store).time(now).build_server_verifier(x509.DNSName("other.example"))
    with pytest.raises(Exception):
        v.verify(srv, [])


def test_set_works_for_a_real_tls_handshake(tmp_path):
    d = tmp_path / "tls"
    certs.make_set(d, "127.0.0.1", client=True)  # 2048: OpenSSL refuses less
    # Mutual TLS: each side trusts only ca.pem and presents its own certificate.
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(d / "server.pem", d / "server.key.pem")
    sctx.load_verify_locations(d / "ca.pem")
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(d / "ca.pem")  # check_hostname on, CERT_REQUIRED
    cctx.load_cert_chain(d / "client.pem", d / "client.key.pem")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []

    def serve():
        conn, _ = srv.accept()
        with sctx.wrap_socket(conn, server_side=True) as s:
            got.append(s.recv(16))
            got.append(s.getpeercert()["subject"][0][0][1])
            s.sendall(b"pong")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with cctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
                c.sendall(b"ping")
                assert c.recv(16) == b"pong"
                assert c.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
        t.join(10)
    finally:
        srv.close()
    assert got[0] == b"ping" and got[1].startswith("espssl client ")


def test_set_sha1_and_weak(tmp_path):
    made = certs.make_set(tmp_path, "10.0.0.1", bits=512, sha1=True, days=7, allow_weak=True)
    ca = x509.load_der_x509_certificate(made["ca.der"].read_bytes())
    srv = x509.load_der_x509_certificate(made["server.der"].read_bytes())
    assert srv.signature_hash_algorithm.name == "sha1" and srv.public_key().key_size == 512
    assert signed_by(srv, ca)
    assert cn_of(srv) == "10.0.0.1"
    assert srv.not_valid_after_utc - srv.not_valid_before_utc == datetime.timedelta(days=7)
    assert "client.der" not in made and not (tmp_path / "client.der").exists()


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_certs_in_process(tmp_path, capsys):
    out = tmp_path / "o"
    assert run(["certs", "--out", str(out), "--ip", "192.168.4.1", "--dns", "a.example", "--dns", "b.example",
                "--bits", "1024", "--client"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    for name in BASE_FILES + CLIENT_FILES:
        assert str(out / name) in text
        assert (out / name).exists()
    assert "RSA-1024" in text and "CN=a.example" in text
    srv = load(out, "server")
    assert san_of(srv) == (["a.example", "b.example"], [ipaddress.ip_address("192.168.4.1")])
    assert srv.public_key().key_size == 1024


def snapshot(d):
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in d.iterdir()}


def test_cli_never_overwrites_without_force(tmp_path, capsys):
    out = tmp_path / "o"
    assert run(["certs", "--out", str(out), "--ip", "127.0.0.1", "--bits", "1024"]) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert run(["certs", "--out", str(out), "--ip", "127.0.0.1", "--bits", "1024"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("A fatal error occurred:") and "--force" in err and err.count("\n") == 1
    assert snapshot(out) == before
    # --client would add files, but one existing target is enough to refuse ALL writes
    assert run(["certs", "--out", str(out), "--ip", "127.0.0.1", "--bits", "1024", "--client"]) == 2
    assert snapshot(out) == before
    # only one target left from an earlier run: still nothing is written
    other = tmp_path / "p"
    other.mkdir()
    (other / "server.key.der").write_bytes(b"precious")
    assert run(["certs", "--out", str(other), "--ip", "127.0.0.1", "--bits", "1024"]) == 2
    assert [p.name for p in other.iterdir()] == ["server.key.der"]
    assert (other / "server.key.der").read_bytes() == b"precious"
    # --force replaces everything (new keys), keys stay 0600 even over a 0644 file
    os.chmod(out / "server.key.der", 0o644)
    assert run(["certs", "--out", str(out), "--ip", "127.0.0.1", "--bits", "1024", "--force"]) == 0
    after = snapshot(out)
    assert set(after) == set(before)
    for name in before:
        assert after[name][0] != before[name][0], name
    assert after["server.key.der"][1] == 0o600
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--bits", "512"], "--allow-weak"),
        (["--ip", "192.168.4.256"], "not an IP address"),
        (["--ip", "esp.local"], "not an IP address"),
        (["--dns", "bad name!"], "not a DNS name"),
        (["--days", "0"], "--days"),
    ],
)
def test_cli_refusals(tmp_path, capsys, extra, words):
    out = tmp_path / "o"
    argv = ["certs", "--out", str(out), "--ip", "127.0.0.1"] + extra
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("A fatal error occurred:") and words in err and err.count("\n") == 1
    assert not out.exists() or not list(out.iterdir())


def test_cli_argparse_rejects_other_sizes(tmp_path, capsys):
    assert run(["certs", "--out", str(tmp_path), "--ip", "127.0.0.1", "--bits", "3000"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_console_script(tmp_path):
    exe = pathlib.Path(sys.executable).with_name("espssl")
    assert exe.exists(), "the espssl console script is not installed"
    out = tmp_path / "c"
    p = subprocess.run([str(exe), "certs", "--out", str(out), "--ip", "127.0.0.1", "--bits", "1024"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == sorted(BASE_FILES)
    p = subprocess.run([str(exe), "certs", "--out", str(out), "--ip", "127.0.0.1"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 2 and p.stderr.startswith("A fatal error occurred:")
    assert "Traceback" not in p.stderr


def test_cli_out_is_a_file_and_ipv6(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_bytes(b"x")
    assert run(["certs", "--out", str(f), "--ip", "127.0.0.1", "--bits", "1024"]) == 2
    assert "not a directory" in capsys.readouterr().err and f.read_bytes() == b"x"
    out = tmp_path / "v6"
    assert run(["certs", "--out", str(out), "--ip", "::1", "--bits", "1024"]) == 0
    srv = load(out, "server")
    assert cn_of(srv) == "::1" and san_of(srv) == ([], [ipaddress.ip_address("::1")])
