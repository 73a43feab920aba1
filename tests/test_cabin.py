"""`espssl ca-bin` / `espssl cert-bin`: build, inspect, byte layout, refusals."""

import datetime
import hashlib
import pathlib
import stat
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from espconn import binfmt
from espconn.errors import FormatError
from espssl import cabin, certs
from espssl.cli import main

UTC = datetime.timezone.utc


def run(argv):
    with pytest.raises(SystemExit) as ex:
        main([str(a) for a in argv])
    return ex.value.code


def make_cacert_reference(paths):
    """Espressif's make_cacert.py algorithm, rewritten from its description:
    for each file, in order: the FULL file name NUL-padded to 32 bytes, the file
    length as two bytes (low byte first), then the file's raw bytes."""
    out = b""
    for p in paths:
        raw = pathlib.Path(p).read_bytes()
        name = pathlib.Path(p).name.encode("ascii")
        out += name + b"\0" * (32 - len(name))
        out += bytes([len(raw) & 0xFF, (len(raw) >> 8) & 0xFF])
        out += raw
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """CA + server + client (1024-bit: fast, and small enough for a one-sector bin)."""
    d = tmp_path_factory.mktemp("pki")
    certs.make_set(d, "192.168.4.1", bits=1024, client=True)
    k = certs.new_key(1024)
    ca2 = certs.make_cert("Second CA", k, is_ca=True)
    (d / "second.cer").write_bytes(certs.cert_der(ca2))
    (d / "second.pem").write_bytes(certs.cert_pem(ca2))
    (d / "two.pem").write_bytes((d / "ca.pem").read_bytes() + (d / "second.pem").read_bytes())
    return d


def fresh(tmp_path, pki, *names):
    """Copies of pki files in tmp_path (so names/order are under the test's control)."""
    out = []
    for n in names:
        src, _, dst = n.partition(":")
        p = tmp_path / (dst or src)
        p.write_bytes((pki / src).read_bytes())
        out.append(p)
    return out


def refused(capsys, argv, out, words):
    """A refusal: exit 2, one line, no output file, no temp file left behind."""
    before = set(out.parent.iterdir()) if out.parent.exists() else set()
    capsys.readouterr()
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("A fatal error occurred:"), err
    assert err.count("\n") == 1, err
    assert words in err, err
    assert not out.exists()
    assert set(out.parent.iterdir()) == before  # nothing new: no partial or temp file
    return err


# --- ca-bin build: layout and byte identity -------------------------------------------------


def test_layout_field_by_field(tmp_path, pki, capsys):
    ca, srv = fresh(tmp_path, pki, "ca.der:ca.cer", "second.cer")
    out = tmp_path / "esp_ca_cert.bin"
    assert run(["ca-bin", "build", "--out", out, ca, srv]) == 0
    img = out.read_bytes()
    ca_der, s_der = ca.read_bytes(), srv.read_bytes()
    # entry 0: name "ca.cer" + 26 NULs, length LE, DER
    assert img[0:6] == b"ca.cer" and img[6:32] == b"\0" * 26
    assert img[32] == len(ca_der) & 0xFF and img[33] == len(ca_der) >> 8
    assert img[34 : 34 + len(ca_der)] == ca_der
    # entry 1 follows with no padding
    o = 34 + len(ca_der)
    assert img[o : o + 10] == b"second.cer" and img[o + 10 : o + 32] == b"\0" * 22
    assert struct.unpack_from("<H", img, o + 32)[0] == len(s_der)
    assert img[o + 34 :] == s_der
    assert len(img) == 2 * 34 + len(ca_der) + len(s_der)
    text = capsys.readouterr().out
    assert "2 entries" in text and str(len(img)) in text


@pytest.mark.parametrize("order", [0, 1])
def test_byte_identical_to_make_cacert_der(tmp_path, pki, order):
    files = fresh(tmp_path, pki, "ca.der:TLS.ca_x509.cer", "second.cer", "server.der:server.cer")
    if order:
        files.reverse()
    out = tmp_path / "esp_ca_cert.bin"
    assert run(["ca-bin", "build", "--out", out] + files) == 0
    assert out.read_bytes() == make_cacert_reference(files)
    assert cabin.build_ca_bin(files) == make_cacert_reference(files)


def test_byte_identical_to_make_cacert_keep_pem(tmp_path, pki):
    files = fresh(tmp_path, pki, "ca.pem:ca.cer", "two.pem:roots.cer", "second.cer")
    out = tmp_path / "esp_ca_cert.bin"
    assert run(["ca-bin", "build", "--keep-pem", "--out", out] + files) == 0
    assert out.read_bytes() == make_cacert_reference(files)
    entries = binfmt.parse(out.read_bytes())
    assert [binfmt.data_kind(d) for _, d in entries] == ["pem", "pem", "der"]


def test_pem_converted_to_der_by_default(tmp_path, pki):
    (one,) = fresh(tmp_path, pki, "ca.pem")
    (two,) = fresh(tmp_path, pki, "two.pem")
    img = cabin.build_ca_bin([one, two])
    entries = [(n, bytes(d)) for n, d in binfmt.parse(img)]
    ca_der = (pki / "ca.der").read_bytes()
    # one entry per certificate, DER; a two-certificate PEM is split as NAME#1, NAME#2
    assert entries == [
        (b"ca.pem", ca_der),
        (b"two.pem#1", ca_der),
        (b"two.pem#2", (pki / "second.cer").read_bytes()),
    ]


def test_round_trip_every_shape(tmp_path, pki):
    files = fresh(tmp_path, pki, "ca.der", "second.pem", "two.pem")
    img = cabin.build_ca_bin(files, keep_pem=True, max_bytes=0)
    got = binfmt.parse(img)
    assert [(n.decode(), bytes(d)) for n, d in got] == [(f.name, f.read_bytes()) for f in files]
    # PEM entries give back the DER certificates they hold
    ders = [der for _, der in binfmt.pem_blocks(got[2][1])]
    assert ders == [(pki / "ca.der").read_bytes(), (pki / "second.cer").read_bytes()]
    # streaming walk agrees with parse
    offs = list(binfmt.walk_bytes(img))
    assert [(n, bytes(img[o : o + k])) for n, o, k in offs] == [(n, bytes(d)) for n, d in got]


def test_binfmt_image_and_header_rules():
    img = binfmt.image([("a", b"\x30\x00"), (b"b", b"xyz")])
    assert img == binfmt.entry("a", b"\x30\x00") + binfmt.entry("b", b"xyz")
    assert binfmt.header("x" * 31, 0xFFFE)[31:] == b"\0\xfe\xff"
    cases = [
        (lambda: binfmt.header("x" * 32, 1), "bad_name"),
        (lambda: binfmt.header("", 1), "bad_name"),
        (lambda: binfmt.header("a\0b", 1), "bad_name"),
        (lambda: binfmt.header("a", 0xFFFF), "too_big"),
        (lambda: binfmt.image([]), "empty"),
        (lambda: binfmt.image([("a", b"1"), ("a", b"2")]), "duplicate_name"),
        (lambda: binfmt.image([("a", b"")]), "empty"),
        (lambda: binfmt.image([("a", b"12345")], max_bytes=38), "too_big"),
    ]
    for fn, reason in cases:
        with pytest.raises(FormatError) as e:
            fn()
        assert e.value.reason == reason
    assert len(binfmt.image([("a", b"12345")], max_bytes=39)) == 39


# --- ca-bin build: refusals --------------------------------------------------------------------


def test_refuse_not_a_certificate(tmp_path, pki, capsys):
    (ca,) = fresh(tmp_path, pki, "ca.der")
    out = tmp_path / "out.bin"
    bad = {
        "text.cer": b"hello, I am not a certificate\n",
        "empty.cer": b"",
        "seq.cer": b"\x30\x03\x02\x01\x05",  # DER, but not X.509
        "crl.pem": b"-----BEGIN X509 CRL-----\nMAMCAQU=\n-----END X509 CRL-----\n",
        "badb64.pem": b"-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
        "noend.pem": b"-----BEGIN CERTIFICATE-----\nMAMCAQU=\n",
    }
    for name, data in bad.items():
        p = tmp_path / name
        p.write_bytes(data)
        refused(capsys, ["ca-bin", "build", "--out", out, ca, p], out, name)
    refused(capsys, ["ca-bin", "build", "--out", out, tmp_path / "missing.cer"], out, "cannot read")


def test_refuse_trailing_garbage_in_der(tmp_path, pki, capsys):
    p = tmp_path / "ca.cer"
    p.write_bytes((pki / "ca.der").read_bytes() + b"\0\0junk")
    out = tmp_path / "out.bin"
    refused(capsys, ["ca-bin", "build", "--out", out, p], out, "trailing garbage")


def test_refuse_long_name_but_31_is_fine(tmp_path, pki, capsys):
    ok, long = fresh(tmp_path, pki, "ca.der:" + "a" * 27 + ".cer", "second.cer:" + "b" * 28 + ".cer")
    out = tmp_path / "out.bin"
    assert len(ok.name) == 31 and len(long.name) == 32
    refused(capsys, ["ca-bin", "build", "--out", out, ok, long], out, "at most 31")
    assert run(["ca-bin", "build", "--out", out, ok]) == 0
    assert out.read_bytes()[:32] == ok.name.encode() + b"\0"


def test_refuse_entry_over_65534(tmp_path, pki, capsys):
    pem = (pki / "ca.pem").read_bytes()
    big = tmp_path / "big.pem"
    big.write_bytes(pem * (65535 // len(pem) + 1))
    assert len(big.read_bytes()) > 65534
    out = tmp_path / "out.bin"
    refused(capsys, ["ca-bin", "build", "--keep-pem", "--max-bytes", 10**6, "--out", out, big], out, "at most 65534")
    # just under the limit: accepted
    n = 65534 // len(pem)
    fit = tmp_path / "fit.pem"
    fit.write_bytes(pem * n)
    assert run(["ca-bin", "build", "--keep-pem", "--max-bytes", 10**6, "--out", out, fit]) == 0
    assert binfmt.parse(out.read_bytes())[0][1] == pem * n


def test_refuse_over_budget_exact_edge(tmp_path, pki, capsys):
    files = fresh(tmp_path, pki, "ca.der", "server.der", "client.der", "second.cer")
    size = len(make_cacert_reference(files))
    out = tmp_path / "out.bin"
    refused(capsys, ["ca-bin", "build", "--max-bytes", size - 1, "--out", out] + files, out, "flash budget")
    assert run(["ca-bin", "build", "--max-bytes", size, "--out", out] + files) == 0
    assert out.stat().st_size == size
    # the default budget is one 4096-byte sector
    many = fresh(tmp_path, pki, *["ca.der:c%d.cer" % i for i in range(8)])
    out2 = tmp_path / "out2.bin"
    assert len(make_cacert_reference(many)) > 4096
    refused(capsys, ["ca-bin", "build", "--out", out2] + many, out2, "4096")
    refused(capsys, ["ca-bin", "build", "--max-bytes", 34, "--out", out2] + many, out2, "cannot hold")
    assert run(["ca-bin", "build", "--max-bytes", 0, "--out", out2] + many) == 0  # 0: no limit
    assert out2.read_bytes() == make_cacert_reference(many)


def test_refuse_no_input(tmp_path, capsys):
    out = tmp_path / "out.bin"
    refused(capsys, ["ca-bin", "build", "--out", out], out, "no input")


def test_refuse_duplicate_names(tmp_path, pki, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = tmp_path / "a" / "ca.cer"
    b = tmp_path / "b" / "ca.cer"
    a.write_bytes((pki / "ca.der").read_bytes())
    b.write_bytes((pki / "second.cer").read_bytes())
    out = tmp_path / "out.bin"
    refused(capsys, ["ca-bin", "build", "--out", out, a, b], out, "duplicate")


@pytest.mark.parametrize("keyfile", ["server.key.der", "server.key.pem", "ca.key.pem"])
def test_refuse_private_key(tmp_path, pki, capsys, keyfile):
    (ca,) = fresh(tmp_path, pki, "ca.der")
    (k,) = fresh(tmp_path, pki, keyfile)
    out = tmp_path / "out.bin"
    refused(capsys, ["ca-bin", "build", "--out", out, ca, k], out, "private key")
    # a PEM holding a certificate AND a key is refused as well, even with --keep-pem
    both = tmp_path / "both.pem"
    both.write_bytes((pki / "server.pem").read_bytes() + (pki / "server.key.pem").read_bytes())
    refused(capsys, ["ca-bin", "build", "--keep-pem", "--out", out, both], out, "private key")


def test_existing_output_and_force(tmp_path, pki, capsys):
    ca, second = fresh(tmp_path, pki, "ca.der", "second.cer")
    out = tmp_path / "esp_ca_cert.bin"
    out.write_bytes(b"precious")
    assert run(["ca-bin", "build", "--out", out, ca]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert run(["ca-bin", "build", "--force", "--out", out, ca, second]) == 0
    assert out.read_bytes() == make_cacert_reference([ca, second])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # a failed build with --force leaves the old file alone
    bad = tmp_path / "bad.cer"
    bad.write_bytes(b"junk")
    assert run(["ca-bin", "build", "--force", "--out", out, bad]) == 2
    assert out.read_bytes() == make_cacert_reference([ca, second])


def test_default_output_name(tmp_path, pki, monkeypatch):
    (ca,) = fresh(tmp_path, pki, "ca.der")
    monkeypatch.chdir(tmp_path)
    assert run(["ca-bin", "build", ca.name]) == 0
    assert (tmp_path / "esp_ca_cert.bin").read_bytes() == make_cacert_reference([ca])


# --- ca-bin inspect ---------------------------------------------------------------------------------


def inspect(capsys, path, cmd="ca-bin"):
    rc = run([cmd, "inspect", path])
    return rc, capsys.readouterr().out


def test_inspect_lists_everything(tmp_path, pki, capsys):
    files = fresh(tmp_path, pki, "ca.der", "two.pem")
    out = tmp_path / "b.bin"
    assert run(["ca-bin", "build", "--keep-pem", "--out", out] + files) == 0
    capsys.readouterr()
    rc, text = inspect(capsys, out)
    assert rc == 0
    ca = x509.load_der_x509_certificate((pki / "ca.der").read_bytes())
    second = x509.load_der_x509_certificate((pki / "second.cer").read_bytes())
    assert "[0] ca.der" in text and "DER, 1 certificate" in text
    assert "[1] two.pem" in text and "PEM, 2 certificates" in text
    assert text.count("subject:  " + ca.subject.rfc4514_string()) == 2
    assert "subject:  CN=Second CA" in text
    assert "issuer:   %s (self-signed)" % ca.subject.rfc4514_string() in text
    assert ca.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S") in text
    assert "RSA-1024" in text and "signature sha256" in text
    for c in (ca, second):
        fp = hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
        assert fp in text
    assert "weak key: RSA-1024" in text  # a warning, not an error
    assert "OK: 0 errors" in text


def bin_of(*entries):
    return binfmt.image(list(entries))


def check(tmp_path, capsys, data, cmd="ca-bin"):
    p = tmp_path / "x.bin"
    p.write_bytes(data)
    return inspect(capsys, p, cmd)


def test_inspect_flags_problems(tmp_path, pki, capsys):
    ca_der = (pki / "ca.der").read_bytes()
    k512, k2048 = certs.new_key(512), certs.new_key(2048)
    past = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    expired = certs.make_cert("old", k2048, is_ca=True, not_before=past, not_after=past + datetime.timedelta(days=1))
    weak = certs.make_cert("weak", k512, is_ca=True)
    sha1 = certs.make_cert("sha1", k2048, is_ca=True, hash_name="sha1")
    future = certs.make_cert("future", k2048, is_ca=True, not_before=datetime.datetime(2090, 1, 1, tzinfo=UTC))
    leaf = (pki / "server.der").read_bytes()
    cases = [
        # (entries, error?, words)
        ([("old.cer", certs.cert_der(expired))], True, "expired on 2020-01-02"),
        ([("weak.cer", certs.cert_der(weak))], True, "weak key: RSA-512"),
        ([("sha1.cer", certs.cert_der(sha1))], False, "signed with SHA-1"),
        ([("future.cer", certs.cert_der(future))], False, "not valid before 2090-01-01"),
        ([("leaf.cer", leaf)], False, "not a CA"),
        ([("ca.cer", ca_der), ("key", (pki / "server.key.der").read_bytes())], True, "private key in a CA bundle"),
        ([("key.pem", (pki / "server.key.pem").read_bytes())], True, "private key (PEM RSA PRIVATE KEY) in a CA bundle"),
        ([("ca.cer", ca_der + b"JUNK")], True, "trailing garbage: 4 bytes after the DER certificate"),
        ([("txt", b"just some text")], True, "not a certificate (neither DER nor PEM)"),
        ([("a", ca_der), ("b", ca_der)], False, "WARNING"),  # same cert twice is fine, names differ
    ]
    for entries, is_error, words in cases:
        rc, text = check(tmp_path, capsys, bin_of(*entries))
        assert words in text, text
        assert rc == (1 if is_error else 0), text
        assert ("FAIL: " if is_error else "OK: ") in text


def test_inspect_format_errors(tmp_path, pki, capsys):
    good = binfmt.entry("ca.cer", (pki / "ca.der").read_bytes())
    cases = [
        (good[:-10], "claims"),  # truncated entry
        (good + b"\x01\x02", "stray bytes"),  # a partial header that is not erased flash
        (b"\xff" * 4096, "no entries"),  # erased sector
        (b"", "no entries"),
        (b"\0" * 32 + b"\x05\x00abcde", "no valid NUL-padded name"),
        (binfmt.header("e", 1)[:32] + b"\0\0" + good, "is empty"),
        (good + b"\x30\x03" + b"\0" * 40, "is empty"),  # garbage where the next header would be
        (good + b"\x30" * 40, "no valid"),
    ]
    for data, words in cases:
        rc, text = check(tmp_path, capsys, data)
        assert rc == 1 and words in text and "FAIL" in text, text
    # a store as read back from flash: list end (0xFFFF) then erased bytes: fine
    rc, text = check(tmp_path, capsys, good + b"\xff" * (4096 - len(good)))
    assert rc == 0 and "1 entry" in text
    # the end mark followed by non-erased bytes: a warning
    rc, text = check(tmp_path, capsys, good + b"\xff" * 34 + b"leftover")
    assert rc == 0 and "trailing garbage" in text
    # entries before a format error are still listed
    rc, text = check(tmp_path, capsys, good + good[:50])
    assert rc == 1 and "[0] ca.cer" in text


def test_inspect_missing_file(tmp_path, capsys):
    assert run(["ca-bin", "inspect", tmp_path / "nope.bin"]) == 2
    assert "cannot read" in capsys.readouterr().err


# --- cert-bin ---------------------------------------------------------------------------------------


def test_cert_bin_build_and_layout(tmp_path, pki, capsys):
    out = tmp_path / "esp_cert_private_key.bin"
    assert run(["cert-bin", "build", "--out", out, "--cert", pki / "server.pem", "--key", pki / "server.key.pem"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    img = out.read_bytes()
    cert_der = (pki / "server.der").read_bytes()
    key_der = (pki / "server.key.der").read_bytes()  # PKCS#1 DER, as written by espssl certs
    assert img[:32] == b"certificate" + b"\0" * 21
    assert struct.unpack_from("<H", img, 32)[0] == len(cert_der)
    assert img[34 : 34 + len(cert_der)] == cert_der
    o = 34 + len(cert_der)
    assert img[o : o + 32] == b"private_key" + b"\0" * 21
    assert struct.unpack_from("<H", img, o + 32)[0] == len(key_der)
    assert img[o + 34 :] == key_der
    # DER inputs give the same bytes; a PKCS#8 key is converted to PKCS#1
    k = serialization.load_der_private_key(key_der, None)
    p8 = tmp_path / "k.p8"
    p8.write_bytes(k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))  # fmt: skip
    assert cabin.build_cert_bin(pki / "server.der", p8) == img
    capsys.readouterr()
    rc, text = inspect(capsys, out, "cert-bin")
    assert rc == 0, text
    assert "[0] certificate" in text and "[1] private_key" in text and "DER private key, RSA-1024" in text
    assert "OK: 0 errors" in text


def test_cert_bin_refusals(tmp_path, pki, capsys):
    out = tmp_path / "c.bin"
    cases = [
        (pki / "server.pem", pki / "client.key.pem", "does not belong"),
        (pki / "two.pem", pki / "server.key.pem", "holds 2 certificates"),
        (pki / "server.key.pem", pki / "server.key.pem", "private key"),
        (pki / "server.pem", pki / "server.pem", "not a private key"),
        (pki / "server.pem", tmp_path / "missing", "cannot read"),
    ]
    for cert, key, words in cases:
        refused(capsys, ["cert-bin", "build", "--out", out, "--cert", cert, "--key", key], out, words)
    out.write_bytes(b"keep")
    assert run(["cert-bin", "build", "--out", out, "--cert", pki / "server.pem", "--key", pki / "server.key.pem"]) == 2
    assert out.read_bytes() == b"keep"
    assert run(["cert-bin", "build", "--force", "--out", out, "--cert", pki / "server.pem",
                "--key", pki / "server.key.pem"]) == 0  # fmt: skip
    assert binfmt.parse(out.read_bytes())[0][0] == b"certificate"


def test_cert_bin_inspect_problems(tmp_path, pki, capsys):
    cert = (pki / "server.der").read_bytes()
    key = (pki / "server.key.der").read_bytes()
    k = serialization.load_der_private_key(key, None)
    p8 = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    other = (pki / "client.key.der").read_bytes()
    cases = [
        ([("certificate", cert)], "no 'private_key' entry"),
        ([("certificate", cert), ("private_key", p8)], "PKCS#8 key"),
        ([("certificate", cert), ("private_key", other)], "does not belong"),
        ([("certificate", (pki / "server.pem").read_bytes()), ("private_key", key)], "PEM certificate"),
        ([("certificate", cert), ("private_key", (pki / "server.key.pem").read_bytes())], "PEM key"),
    ]
    for entries, words in cases:
        rc, text = check(tmp_path, capsys, bin_of(*entries), "cert-bin")
        assert rc == 1 and words in text, text


# --- the console script -------------------------------------------------------------------------


def test_console_script_ca_bin(tmp_path, pki):
    exe = pathlib.Path(sys.executable).with_name("espssl")
    files = fresh(tmp_path, pki, "ca.der:ca.cer", "second.cer")
    out = tmp_path / "esp_ca_cert.bin"
    p = subprocess.run([str(exe), "ca-bin", "build", "--out", str(out)] + [str(f) for f in files],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == make_cacert_reference(files)
    p = subprocess.run([str(exe), "ca-bin", "inspect", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "[1] second.cer" in p.stdout
    bad = tmp_path / "bad.bin"
    bad.write_bytes(out.read_bytes()[:-1])
    p = subprocess.run([str(exe), "ca-bin", "inspect", str(bad)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "FAIL" in p.stdout and not p.stderr


# --- robustness: whatever the bytes, a report (never a traceback) ---------------------------------


def test_inspect_odd_bytes_in_names_and_labels(tmp_path, capsys):
    cases = [
        (b"\x80\x01a" + b"\0" * 29 + b"\0\0", "\\x80\\x01a"),  # non-UTF-8 name, empty entry
        (b"\xc3(" + b"\0" * 30 + b"\x03\x00abc", "not a certificate"),
        (binfmt.entry("p.pem", b"-----BEGIN \xff\xfe-----\nAAAA\n-----END \xff\xfe-----\n"), "\\xff\\xfe"),
        (binfmt.entry("q.pem", b"-----BEGIN " + b"X" * 200 + b"-----\n"), "not terminated"),
    ]
    for data, words in cases:
        rc, text = check(tmp_path, capsys, data)
        assert rc == 1 and words in text, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_walk_raises_only_format_error(data):
    try:
        entries = list(binfmt.walk_bytes(data))
    except FormatError:
        return
    end = 0
    for _name, off, n in entries:  # entries tile the image from offset 0, in order
        assert off == end + binfmt.HEADER_LEN and n > 0
        end = off + n
    assert end <= len(data)


def test_inspect_survives_mutations(pki):
    import random

    rnd = random.Random(1234)
    good = binfmt.image([("ca.der", (pki / "ca.der").read_bytes()), ("two.pem", (pki / "two.pem").read_bytes())])
    for _ in range(150):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            b = b[: rnd.randrange(len(b))]
        for kind in ("ca", "cert"):
            rep = cabin.inspect_bin(bytes(b), kind)
            cabin.format_report(rep, "x")  # renders whatever was found


# --- one verdict, the device's (issue 12) -------------------------------------------------


def one_fatal_line(capsys, argv):
    capsys.readouterr()
    rc = run(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("A fatal error occurred:"), err
    return err


@pytest.mark.parametrize("name", ["ca.der", "ca.pem"])
def test_a_plain_certificate_is_not_a_bin(tmp_path, pki, capsys, monkeypatch, name):
    monkeypatch.setenv("ESPSSL_VBOARD_DIR", str(tmp_path / "no-board"))
    (f,) = fresh(tmp_path, pki, name)
    capsys.readouterr()
    assert run(["ca-bin", "inspect", f]) == 1
    out = capsys.readouterr().out
    assert "this is a certificate, not a CA bin: build one with `espssl ca-bin build" in out
    assert "NUL-padded" not in out
    # flash-ca says the same, before looking for a board
    err = one_fatal_line(capsys, ["flash-ca", f])
    assert "this is a certificate, not a CA bin: build one with `espssl ca-bin build" in err
    assert run(["cert-bin", "inspect", f]) == 1
    assert "not a certificate bin: build one with `espssl cert-bin build" in capsys.readouterr().out


def _verify_reason(chain, anchors):
    from espconn import x509
    from espconn.errors import VerifyError

    try:
        x509.verify_chain(chain, anchors)
    except VerifyError as e:
        return e.reason
    return None


def test_leaf_warning_says_what_the_device_does(tmp_path, pki, capsys):
    """A CA-signed leaf in the store: the device refuses it (unknown_issuer); build and inspect say so."""
    leaf = (pki / "server.der").read_bytes()
    assert _verify_reason([leaf], [leaf]) == "unknown_issuer"  # what espconn does with it
    out = tmp_path / "leaf.bin"
    capsys.readouterr()
    assert run(["ca-bin", "build", "--out", out, pki / "server.der"]) == 0
    err = capsys.readouterr().err
    assert "never uses it as a trust anchor" in err and "unknown_issuer" in err, err
    assert "espconn_secure_set_pin" in err and "pin itself" not in err
    assert run(["ca-bin", "inspect", out]) == 0
    assert "unknown_issuer" in capsys.readouterr().out

    # A self-signed CA:FALSE certificate: trusted as exactly itself, never as an issuer.
    k = certs.new_key(2048)
    ss = certs.make_cert("self", k, is_ca=False)
    below = certs.cert_der(certs.make_cert("below", certs.new_key(1024), ss, k))
    assert _verify_reason([certs.cert_der(ss)], [certs.cert_der(ss)]) is None
    assert _verify_reason([below], [certs.cert_der(ss)]) == "not_a_ca"
    (tmp_path / "self.der").write_bytes(certs.cert_der(ss))
    assert run(["ca-bin", "build", "--out", tmp_path / "self.bin", tmp_path / "self.der"]) == 0
    err = capsys.readouterr().err
    assert "trusts only a server that sends exactly this self-signed certificate" in err and "not_a_ca" in err


def test_a_512_bit_ca_has_one_verdict(tmp_path, capsys, monkeypatch):
    """Refused by build, failed by inspect, refused by flash-ca (before any board): the same words."""
    monkeypatch.setenv("ESPSSL_VBOARD_DIR", str(tmp_path / "no-board"))
    weak = certs.make_cert("weak", certs.new_key(512), is_ca=True)
    (tmp_path / "weak.der").write_bytes(certs.cert_der(weak))
    words = "weak key: RSA-512 (espconn wants at least 1024 bits)"
    out = tmp_path / "weak.bin"
    assert words in refused(capsys, ["ca-bin", "build", "--out", out, tmp_path / "weak.der"], out, words)
    out.write_bytes(binfmt.entry("weak.der", certs.cert_der(weak)))  # made by another tool
    assert run(["ca-bin", "inspect", out]) == 1
    assert words in capsys.readouterr().out
    err = one_fatal_line(capsys, ["flash-ca", out])
    assert words in err and "no virtual board" not in err


def test_a_ca_with_a_broken_signature_fails(tmp_path, pki, capsys):
    der = bytearray((pki / "second.cer").read_bytes())
    der[-5] ^= 0x01  # inside the signature: it still parses
    assert x509.load_der_x509_certificate(bytes(der)).subject.rfc4514_string() == "CN=Second CA"
    (tmp_path / "bad.der").write_bytes(bytes(der))
    out = tmp_path / "bad.bin"
    out.write_bytes(binfmt.entry("bad.der", bytes(der)))
    capsys.readouterr()
    assert run(["ca-bin", "inspect", out]) == 1
    text = capsys.readouterr().out
    assert "ERROR: its own signature does not verify" in text and "FAIL: 1 error" in text
    good = tmp_path / "good.bin"
    good.write_bytes(binfmt.entry("second.cer", (pki / "second.cer").read_bytes()))
    assert run(["ca-bin", "inspect", good]) == 0  # the intact one: no such error
    assert "own signature" not in capsys.readouterr().out
    out2 = tmp_path / "bad2.bin"
    refused(capsys, ["ca-bin", "build", "--out", out2, tmp_path / "bad.der"], out2, "its own signature does not verify")


def test_entries_named_on_the_command_line(tmp_path, capsys):
    """Three ca.der from three `espssl certs` runs: NAME=PATH names each entry."""
    paths = []
    for site in ("home", "office", "lab"):
        d = tmp_path / site
        d.mkdir()
        der = certs.cert_der(certs.make_cert(site + " CA", certs.new_key(1024), is_ca=True))
        (d / "ca.der").write_bytes(der)
        paths.append(d / "ca.der")
    out = tmp_path / "three.bin"
    err = refused(capsys, ["ca-bin", "build", "--out", out] + paths, out, "duplicate entry name 'ca.der'")
    assert "NAME=PATH" in err
    assert run(["ca-bin", "build", "--out", out] + ["%s=%s" % (p.parent.name, p) for p in paths]) == 0
    got = [(n.decode(), bytes(d)) for n, d in binfmt.parse(out.read_bytes())]
    assert got == [(p.parent.name, p.read_bytes()) for p in paths]
    # a file whose own name holds '=' is still a path
    odd = tmp_path / "a=b.der"
    odd.write_bytes(paths[0].read_bytes())
    assert run(["ca-bin", "build", "--out", tmp_path / "odd.bin", odd]) == 0
    assert binfmt.parse((tmp_path / "odd.bin").read_bytes())[0][0] == b"a=b.der"
