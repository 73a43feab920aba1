"""espssl flash-ca / flash-cert / flash-firmware against the real virtual board, with real esptool.

Every refusal: one clear line, exit 2, and the flash unchanged, checked by an
independent read-back with esptool's own CLI (``esptool.main([... read-flash])``).
"""

import hashlib
import os
import pty
import struct

import pytest

from espconn import binfmt
from espssl import certs
from espssl.cli import main
from espssl.vboard import cli as vboard

pytestmark = pytest.mark.vboard
SECTOR = 4096


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    """A 1 MiB and a 4 MiB virtual board, each in its own directory."""
    out = {}
    dirs = []
    try:
        for size in ("1M", "4M"):
            d = tmp_path_factory.mktemp("vboard-flash-" + size)
            dirs.append(d)
            out[size] = vboard.start(d, flash=size)
            out[size + "-dir"] = d
        yield out
    finally:
        for d in dirs:
            vboard.stop(d)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # No accidental use of a developer's running board; backups go to tmp.
    monkeypatch.setenv("ESPSSL_VBOARD_DIR", str(tmp_path / "no-board-here"))
    monkeypatch.setenv("ESPSSL_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.chdir(tmp_path)


def _cert(cn="espssl test CA"):
    key = certs.new_key(1024)
    return certs.cert_der(certs.make_cert(cn, key, is_ca=True, days=30)), key


@pytest.fixture(scope="module")
def ca_bin():
    der, _ = _cert()
    return binfmt.entry("ca.cer", der)


@pytest.fixture(scope="module")
def cert_bin():
    der, key = _cert("device")
    return binfmt.entry("certificate", der) + binfmt.entry("private_key", certs.key_der_pkcs1(key))


def esptool_read(port, offset, size, tmp_path):
    """Read flash with esptool's own CLI, in-process (independent of espssl.flash)."""
    import esptool

    out = tmp_path / ("rb-%x-%x.bin" % (offset, size))
    esptool.main(["--chip", "esp8266", "--port", port, "--before", "no-reset", "--after", "soft-reset",
                  "read-flash", hex(offset), hex(size), str(out)])
    return out.read_bytes()


def run(argv, capsys):
    capsys.readouterr()  # drop what earlier esptool reads printed
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def refused(rc, err, *needles):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("A fatal error occurred: "), err
    for n in needles:
        assert n in lines[0], lines[0]


def free_set(err):
    """The sector numbers listed after 'free sectors: ' ('0x8F-0x98, 0xA0')."""
    out = set()
    for part in err.split("free sectors: ")[1].strip().split(", "):
        a, _, b = part.partition("-")
        out.update(range(int(a, 16), int(b or a, 16) + 1))
    return out


def write_file(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


# ---------------------------------------------------------------- writes


def test_flash_ca_default_sector_backup_and_restore(boards, ca_bin, tmp_path, capsys):
    port = boards["1M"]
    off = 0x98 * SECTOR  # esp8266-1m's default CA sector
    before = esptool_read(port, off, SECTOR, tmp_path)
    rc, out, err = run(["flash-ca", "--port", port, write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    assert rc == 0, err
    assert "Wrote 4096 bytes at 0x00098000 (sector 0x98); read back and compared: verified" in out
    after = esptool_read(port, off, SECTOR, tmp_path)
    assert after == ca_bin + b"\xff" * (SECTOR - len(ca_bin))
    # The backup holds exactly what was there, and says where it came from.
    backups = sorted((tmp_path / "backups").glob("ca-0x098000-*.bin"))
    assert len(backups) == 1 and str(backups[0]) in out
    assert backups[0].read_bytes() == before

    # A different bin over it, then restore the first backup: the old bytes come back.
    rc, out, err = run(["flash-ca", "--port", port, "--restore", str(backups[0])], capsys)
    assert rc == 0, err
    assert "verified" in out
    assert esptool_read(port, off, SECTOR, tmp_path) == before
    # Restoring made a backup of what it replaced (the CA bin), so it can be undone too.
    newest = sorted((tmp_path / "backups").glob("ca-0x098000-*.bin"))[-1]
    assert newest.read_bytes() == after


def test_flash_ca_explicit_sector_on_4m(boards, ca_bin, tmp_path, capsys):
    port = boards["4M"]
    rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF3",
                        write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    assert rc == 0, err
    assert "at 0x000F3000 (sector 0xF3)" in out and "esp8266-4m" in out
    assert esptool_read(port, 0xF3000, SECTOR, tmp_path)[: len(ca_bin)] == ca_bin


def test_flash_cert_default_sector(boards, cert_bin, tmp_path, capsys):
    port = boards["4M"]
    rc, out, err = run(["flash-cert", "--port", port, write_file(tmp_path, "esp_cert_private_key.bin", cert_bin)],
                       capsys)
    assert rc == 0, err
    assert "(sector 0xF1)" in out
    assert esptool_read(port, 0xF1000, SECTOR, tmp_path)[: len(cert_bin)] == cert_bin


# ---------------------------------------------------------------- refusals (flash unchanged)


@pytest.mark.parametrize(
    "size,sector,what",
    [
        ("1M", "0x3B", "MicroPython firmware image"),  # the SDK manual's example sector
        ("1M", "0x99", "filesystem"),
        ("1M", "0xFC", "SDK parameters"),
        ("1M", "0x100", "runs past the end"),
        ("4M", "0x3B", "MicroPython firmware image"),
        ("4M", "0x100", "filesystem"),
        ("4M", "0x3FF", "SDK parameters"),
    ],
)
def test_overlap_refused_flash_unchanged(boards, ca_bin, tmp_path, capsys, size, sector, what):
    port = boards[size]
    off = int(sector, 16) * SECTOR
    readable = off < (1 << 20 if size == "1M" else 4 << 20)
    before = esptool_read(port, off, SECTOR, tmp_path) if readable else None
    rc, out, err = run(["flash-ca", "--port", port, "--sector", sector,
                        write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    refused(rc, err, "sector %s" % sector.upper().replace("0X", "0x"), what, "free sectors: ")
    # The message names the free sectors; the default CA sector is among them.
    assert (0x98 if size == "1M" else 0xF0) in free_set(err)
    assert "Wrote" not in out and not list((tmp_path / "backups").glob("*"))
    if readable:
        assert esptool_read(port, off, SECTOR, tmp_path) == before


def test_sdk_manual_sector_message(boards, ca_bin, tmp_path, capsys):
    rc, out, err = run(["flash-ca", "--port", boards["1M"], "--sector", "0x3B",
                        write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    refused(rc, err)
    # What is there (the image, with its real length read from 0x8FFC) and where to go instead.
    assert "would overwrite the MicroPython firmware image (0x0.." in err
    assert "from 0x8FFC" in err
    assert 0x98 in free_set(err) and 0x3B not in free_set(err)


def test_board_profile_mismatch_refused(boards, ca_bin, tmp_path, capsys):
    rc, out, err = run(["flash-ca", "--port", boards["1M"], "--board", "esp8266-4m",
                        write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    refused(rc, err, "esp8266-4m is for 4 MiB of flash but the board has 1 MiB")


def test_512k_profile_refused(boards, ca_bin, tmp_path, capsys):
    rc, out, err = run(["flash-ca", "--port", boards["1M"], "--board", "esp8266-512k",
                        write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    refused(rc, err, "not supported", "no filesystem")


def test_wrong_files_refused_before_connecting(boards, ca_bin, cert_bin, tmp_path, capsys):
    port = boards["1M"]
    before = esptool_read(port, 0x98000, SECTOR, tmp_path)
    firmware = _firmware_image(0x20000)
    cases = [
        (["flash-ca"], firmware, "firmware image"),
        (["flash-ca"], cert_bin, "private key"),
        (["flash-cert"], ca_bin, "1 certificate(s) and 0 key(s)"),
        (["flash-ca"], b"\xff" * 64, "no entries"),
        (["flash-ca"], b"hello, this is not a bin at all" * 4, "is not an esp_ca_cert.bin"),
        (["flash-ca"], ca_bin[:-10], "claims"),  # truncated entry
        (["flash-firmware"], ca_bin, "not a MicroPython ESP8266 firmware image"),
        (["flash-firmware"], firmware[:-1] + bytes([firmware[-1] ^ 1]), "MD5"),
    ]
    for cmd, data, needle in cases:
        rc, out, err = run(cmd + ["--port", port, write_file(tmp_path, "in.bin", data)], capsys)
        refused(rc, err, needle)
        assert "Connecting" not in out  # refused before esptool touched the board
    assert esptool_read(port, 0x98000, SECTOR, tmp_path) == before


def test_missing_port_refused(ca_bin, tmp_path, capsys):
    # No --port and no virtual board running (ESPSSL_VBOARD_DIR points at an empty dir).
    rc, out, err = run(["flash-ca", write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    refused(rc, err, "no --port given and no virtual board is running", "espssl vboard start")
    rc, out, err = run(["flash-ca", "--port", "/dev/espssl-no-such-port", "--connect-attempts", "1",
                        write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    refused(rc, err, "/dev/espssl-no-such-port is not responding")


def test_without_port_uses_the_running_virtual_board(boards, ca_bin, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ESPSSL_VBOARD_DIR", str(boards["1M-dir"]))  # where `espssl vboard status` looks
    rc, out, err = run(["flash-ca", "--sector", "0x95", write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    assert rc == 0, err
    assert "Wrote 4096 bytes at 0x00095000 (sector 0x95); read back and compared: verified" in out
    assert esptool_read(boards["1M"], 0x95000, SECTOR, tmp_path)[: len(ca_bin)] == ca_bin


def test_silent_board_refused(ca_bin, tmp_path, capsys):
    master, slave = pty.openpty()  # a port nobody answers on
    try:
        rc, out, err = run(["flash-ca", "--port", os.ttyname(slave), "--connect-attempts", "1",
                            write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    finally:
        os.close(master)
        os.close(slave)
    refused(rc, err, "is not responding to esptool")
    assert not list((tmp_path / "backups").glob("*"))


def test_restore_refuses_tampered_backup(boards, ca_bin, tmp_path, capsys):
    port = boards["1M"]
    rc, out, err = run(["flash-ca", "--port", port, write_file(tmp_path, "esp_ca_cert.bin", ca_bin)], capsys)
    assert rc == 0, err
    backup = sorted((tmp_path / "backups").glob("*.bin"))[-1]
    now = esptool_read(port, 0x98000, SECTOR, tmp_path)
    backup.write_bytes(b"\0" + backup.read_bytes()[1:])
    rc, out, err = run(["flash-ca", "--port", port, "--restore", str(backup)], capsys)
    refused(rc, err, "does not match its note")
    lone = tmp_path / "lone.bin"
    lone.write_bytes(b"\xff" * SECTOR)
    rc, out, err = run(["flash-ca", "--port", port, "--restore", str(lone)], capsys)
    refused(rc, err, "no readable note")
    assert esptool_read(port, 0x98000, SECTOR, tmp_path) == now


# ---------------------------------------------------------------- firmware


def _firmware_image(rom_len):
    """An image laid out as MicroPython's makeimg.py writes it: RAM segments padded to
    0x9000 with the length word at 0x8FFC, then irom0, then MD5(image[4:len])."""
    head = bytes([0xE9, 0x02, 0x00, 0x20]) + bytes(range(256)) * 4
    img = bytearray(head + b"\xff" * (0x8FFC - len(head)))
    img += struct.pack("<I", 0x9000 + rom_len)
    img += bytes((i * 7) & 0xFF for i in range(rom_len))
    img += hashlib.md5(bytes(img[4:])).digest()
    return bytes(img)


def test_flash_firmware_too_big_for_1m(boards, tmp_path, capsys):
    image = _firmware_image(0x99000 - 0x9000)  # a 2M+ build: longer than the 1M region
    rc, out, err = run(["flash-firmware", "--port", boards["1M"], write_file(tmp_path, "fw.bin", image)], capsys)
    refused(rc, err, "esp8266-1m firmware region", "build for a larger flash")


def test_flash_firmware_erases_writes_and_verifies(boards, tmp_path, capsys):
    port = boards["4M"]
    image = _firmware_image(0x30000)
    rc, out, err = run(["flash-firmware", "--port", port, write_file(tmp_path, "fw.bin", image)], capsys)
    assert rc == 0, err
    assert "Wrote %d bytes at 0x00000000" % len(image) in out and "verified" in out
    back = esptool_read(port, 0, len(image) + SECTOR, tmp_path)
    assert back[:2] == image[:2] and back[4 : len(image)] == image[4:]
    assert back[len(image):] == b"\xff" * SECTOR  # the rest was erased
    # The board reports the new image length, and the guard follows it.
    assert esptool_read(port, 0x8FFC, 4, tmp_path) == struct.pack("<I", 0x39000)
