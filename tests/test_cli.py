"""The CLI's one error handler: every bad path or number is one line and exit 2, never a traceback."""

import os
import subprocess
import sys

import pytest

from espconn import binfmt
from espssl import certs
from espssl.vboard import cli as vboard
from conftest import espssl

ESPSSL = [sys.executable, "-m", "espssl"]


def run(argv, capsys):
    return espssl(argv, capsys)


def one_line(err, *words):
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.fixture(autouse=True)
def _isolated(isolated):
    pass


@pytest.fixture(scope="module")
def ca_der(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    p = d / "ca.der"
    p.write_bytes(certs.cert_der(certs.make_cert("cli CA", certs.new_key(2048), is_ca=True)))
    return p


@pytest.mark.parametrize("argv,path", [
    (["certs", "--out", "/proc/nope", "--ip", "192.168.4.1"], "/proc/nope"),
    (["vboard", "start", "--dir", "/proc/vbx"], "/proc/vbx"),
])
def test_unwritable_directory_is_one_line(capsys, argv, path):
    rc, _out, err = run(argv, capsys)
    assert rc == 2
    one_line(err, "A fatal error occurred:", path, "No such file or directory")


def test_unwritable_output_file_is_one_line(capsys, ca_der):
    rc, _out, err = run(["ca-bin", "build", "--out", "/proc/x.bin", ca_der], capsys)
    assert rc == 2
    one_line(err, "/proc/x.bin")


def test_max_bytes_takes_hex_like_sector(capsys, ca_der, tmp_path):
    rc, _out, err = run(["ca-bin", "build", "--max-bytes", "0x1000", "--out", tmp_path / "a.bin", ca_der], capsys)
    assert rc == 0, err
    size = len((tmp_path / "a.bin").read_bytes())
    rc, _out, err = run(["ca-bin", "build", "--max-bytes", hex(size - 1), "--out", tmp_path / "b.bin", ca_der], capsys)
    assert rc == 2 and "over the flash budget of %d bytes" % (size - 1) in err  # read as hex
    rc, _out, err = run(["ca-bin", "build", "--max-bytes", "-5", "--out", tmp_path / "c.bin", ca_der], capsys)
    assert rc == 2 and "--max-bytes: -5 is negative" in err
    assert not (tmp_path / "b.bin").exists() and not (tmp_path / "c.bin").exists()


@pytest.mark.parametrize("value,words", [("-1", "-1 is negative"), ("0xZZ", "'0xZZ' is not a number")])
def test_sector_number_is_checked_before_anything(capsys, value, words, tmp_path):
    (tmp_path / "x.bin").write_bytes(b"")
    rc, _out, err = run(["flash-ca", "--sector", value, tmp_path / "x.bin"], capsys)
    assert rc == 2
    assert "argument --sector: " + words in err and "0x-1000" not in err and "Traceback" not in err


def test_broken_pipe_is_quiet(ca_der, tmp_path):
    """`espssl ca-bin inspect F | head -2`: the reader has gone; no traceback, no second error."""
    data = binfmt.entry("ca.der", ca_der.read_bytes())
    (tmp_path / "ca.bin").write_bytes(data)
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write: EPIPE every time
    try:
        proc = subprocess.run(ESPSSL + ["ca-bin", "inspect", str(tmp_path / "ca.bin")], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert proc.stderr == "" and proc.returncode == 1


@pytest.mark.vboard
def test_unwritable_backup_dir_is_one_line_and_flash_untouched(capsys, ca_der, tmp_path):
    d = tmp_path / "vb"
    port = vboard.start(d, flash="4M")
    try:
        before = (d / "flash.bin").read_bytes()
        (tmp_path / "ca.bin").write_bytes(binfmt.entry("ca.der", ca_der.read_bytes()))
        rc, _out, err = run(["flash-ca", "--port", port, "--backup-dir", "/proc/bk", tmp_path / "ca.bin"], capsys)
    finally:
        vboard.stop(d)
    assert rc == 2
    one_line(err, "/proc/bk", "No such file or directory")
    after = (d / "flash.bin").read_bytes()
    fs = slice(0x100000, 0x3FB000)  # MicroPython makes its filesystem at first boot
    assert after[: fs.start] == before[: fs.start] and after[fs.stop :] == before[fs.stop :]
