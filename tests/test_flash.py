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
from espssl.vboard import cli as vboard
from conftest import espssl

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
def _isolated(isolated):
    pass


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
    return espssl(argv, capsys)


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
    refused(rc, err, "no --port given, no virtual board is running and no USB serial device", "espssl vboard start")
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


# ---------------------------------------------------------------- other bins are not overwritten


def _ca_bundle(n):
    """A CA bin of N entries (1024-bit CAs: ~0.6 KB each)."""
    return b"".join(binfmt.entry("ca%d.cer" % i, _cert("espssl CA %d" % i)[0]) for i in range(n))


def test_flash_ca_refuses_overwriting_a_cert_bin(boards, ca_bin, cert_bin, tmp_path, capsys):
    port = boards["4M"]
    rc, out, err = run(["flash-cert", "--port", port, "--sector", "0xF4",
                        write_file(tmp_path, "cert.bin", cert_bin)], capsys)
    assert rc == 0, err
    before = esptool_read(port, 0xF4000, SECTOR, tmp_path)
    whole = (boards["4M-dir"] / "flash.bin").read_bytes()
    backups = set((tmp_path / "backups").glob("*"))
    rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF4", write_file(tmp_path, "ca.bin", ca_bin)], capsys)
    refused(rc, err, "sector 0xF4 holds a device certificate bin", "certificate, private_key", "--force")
    assert esptool_read(port, 0xF4000, SECTOR, tmp_path) == before
    assert (boards["4M-dir"] / "flash.bin").read_bytes() == whole  # nothing anywhere changed
    assert set((tmp_path / "backups").glob("*")) == backups  # refused before any backup or write
    # --force overwrites it, after saving it.
    rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF4", "--force",
                        write_file(tmp_path, "ca.bin", ca_bin)], capsys)
    assert rc == 0, err
    assert "--force: overwriting a device certificate bin" in out
    assert esptool_read(port, 0xF4000, SECTOR, tmp_path)[: len(ca_bin)] == ca_bin
    saved = sorted((tmp_path / "backups").glob("ca-0x0F4000-*.bin"))
    assert saved and saved[-1].read_bytes() == before


def test_flash_ca_replaces_its_own_kind(boards, ca_bin, tmp_path, capsys):
    port = boards["4M"]
    other = _ca_bundle(2)
    for data in (ca_bin, other):
        rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF5", write_file(tmp_path, "ca.bin", data)],
                           capsys)
        assert rc == 0, err
    assert "Replacing a CA bin, esp_ca_cert.bin (ca.cer) at sector 0xF5" in out
    assert esptool_read(port, 0xF5000, SECTOR, tmp_path)[: len(other)] == other


def test_big_ca_bundle_spilling_over_a_cert_bin_refused(boards, cert_bin, tmp_path, capsys):
    port = boards["4M"]
    big = _ca_bundle(8)
    assert SECTOR < len(big) <= 2 * SECTOR
    rc, out, err = run(["flash-cert", "--port", port, "--sector", "0xF7",
                        write_file(tmp_path, "cert.bin", cert_bin)], capsys)
    assert rc == 0, err
    before = esptool_read(port, 0xF6000, 2 * SECTOR, tmp_path)
    whole = (boards["4M-dir"] / "flash.bin").read_bytes()
    rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF6", write_file(tmp_path, "big.bin", big)], capsys)
    refused(rc, err, "sector 0xF7 holds a device certificate bin")
    assert esptool_read(port, 0xF6000, 2 * SECTOR, tmp_path) == before
    assert (boards["4M-dir"] / "flash.bin").read_bytes() == whole
    # Two free sectors take it, and it reads back whole.
    rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF8", write_file(tmp_path, "big.bin", big)], capsys)
    assert rc == 0, err
    assert "Wrote 8192 bytes at 0x000F8000" in out
    assert esptool_read(port, 0xF8000, 2 * SECTOR, tmp_path)[: len(big)] == big
    # A small bin over the first sector of that bundle replaces it (same kind, same place).
    rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF9", write_file(tmp_path, "ca.bin", _ca_bundle(1))],
                       capsys)
    assert rc == 0, err  # 0xF9 is the bundle's second half: no bin starts there


# ---------------------------------------------------------------- ports, baud, esptool's notes


def test_baud_and_no_pty_noise(boards, ca_bin, tmp_path, capsys):
    port = boards["1M"]
    rc, out, err = run(["flash-ca", "--port", port, "--baud", "460800", "--sector", "0x96",
                        write_file(tmp_path, "ca.bin", ca_bin)], capsys)
    assert rc == 0, err
    assert "Changing baud rate to 460800" in out
    assert "VID/PID" not in out + err and "Connection may fail" not in out + err
    assert esptool_read(port, 0x96000, SECTOR, tmp_path)[: len(ca_bin)] == ca_bin


class _FakeUsbPort:
    """What pyserial's list_ports gives for a USB-serial bridge (none can exist on CI)."""

    def __init__(self, device, description):
        self.device, self.description, self.vid, self.pid = device, description, 0x10C4, 0xEA60


def test_port_auto_detected_when_one_usb_device(boards, ca_bin, tmp_path, monkeypatch, capsys):
    from serial.tools import list_ports

    # The one "USB device" is the virtual board's pty, so the command really runs against it.
    monkeypatch.setattr(list_ports, "comports", lambda: [_FakeUsbPort(boards["1M"], "CP2102 USB to UART")])
    rc, out, err = run(["flash-ca", "--sector", "0x94", write_file(tmp_path, "ca.bin", ca_bin)], capsys)
    assert rc == 0, err
    assert "No --port: using %s (CP2102 USB to UART), the only USB serial device" % boards["1M"] in out
    assert esptool_read(boards["1M"], 0x94000, SECTOR, tmp_path)[: len(ca_bin)] == ca_bin
    two = [_FakeUsbPort("/dev/ttyUSB0", "CP2102"), _FakeUsbPort("/dev/ttyUSB1", "CH340")]
    monkeypatch.setattr(list_ports, "comports", lambda: two)
    rc, out, err = run(["flash-ca", write_file(tmp_path, "ca.bin", ca_bin)], capsys)
    refused(rc, err, "2 USB serial devices are present (/dev/ttyUSB0: CP2102, /dev/ttyUSB1: CH340): pass --port")


# ---------------------------------------------------------------- ROMFS detection


def test_profile_for_romfs_detection():
    from espssl import flash, layout

    four = 4 << 20
    assert flash.profile_for(four, {"flash_size": four, "segments": 1, "romfs_size": 0x50000}).name == "esp8266-4m-romfs"
    assert flash.profile_for(four, {"flash_size": four, "segments": 0, "romfs_size": 0}).name == "esp8266-4m"
    with pytest.raises(layout.LayoutError, match="ROMFS partition is 65536 bytes.*not the official"):
        flash.profile_for(four, {"flash_size": four, "segments": 1, "romfs_size": 0x10000})
    # MicroPython silent: a ROMFS image at 0xB0000 or an image too long for the variant decides.
    assert flash.profile_for(four, None, b"\xd2\xcd\x31\x80", 0xA04C0).name == "esp8266-4m-romfs"
    assert flash.profile_for(four, None, b"\xff" * 4, 0xB8000).name == "esp8266-4m"
    # Neither: the partition stays reserved and there is no default sector to pick.
    p = flash.profile_for(four, None, b"\xff" * 4, 0xA04C0)
    assert p.name == "esp8266-4m or esp8266-4m-romfs" and p.default_ca_sector is None
    with pytest.raises(layout.LayoutError, match=r"ROMFS partition .*pass --board esp8266-4m \(the plain build\) or "
                       "--board esp8266-4m-romfs"):
        layout.check_write(p, 0xA04C0, 0xF0000, 4096)
    layout.check_write(p, 0xA04C0, 0xAE000, 4096)
    assert flash.profile_for(1 << 20, None).name == "esp8266-1m"


def test_silent_micropython_keeps_the_romfs_range_reserved(tmp_path_factory, ca_bin, tmp_path, capsys):
    # A board whose main.py never gives up the REPL: esptool still gets in, but nothing says
    # whether 0xB0000..0xFFFFF is a (still empty) ROMFS partition, so it stays refused.
    from espssl import deploy

    d = tmp_path_factory.mktemp("vboard-silent")
    port = vboard.start(d, flash="4M")
    try:
        with deploy.Board(port) as b:
            b.t.fs_writefile("/main.py", b"import time\nwhile True:\n    try:\n        time.sleep(0.2)\n"
                             b"    except KeyboardInterrupt:\n        pass\n")
            try:
                b.exec("import machine\nmachine.reset()", timeout=2)
            except Exception:  # noqa: BLE001 - the board resets under the raw REPL
                pass
        whole = (d / "flash.bin").read_bytes()
        rc, out, err = run(["flash-ca", "--port", port, write_file(tmp_path, "ca.bin", ca_bin)], capsys)
        refused(rc, err, "esp8266-4m or esp8266-4m-romfs has no default CA sector", "MicroPython did not answer")
        rc, out, err = run(["flash-ca", "--port", port, "--sector", "0xF2", write_file(tmp_path, "ca.bin", ca_bin)],
                           capsys)
        refused(rc, err, "would overwrite the ROMFS partition (0xB0000..0xFFFFF, 320 KiB) if this is the "
                "FLASH_2M_ROMFS firmware", "free sectors: 0x9B-0xAF")
        assert (d / "flash.bin").read_bytes() == whole
        rc, out, err = run(["flash-ca", "--port", port, "--board", "esp8266-4m", write_file(tmp_path, "ca.bin", ca_bin)],
                           capsys)
        assert rc == 0, err
        assert (d / "flash.bin").read_bytes()[0xF0000 : 0xF0000 + len(ca_bin)] == ca_bin
    finally:
        vboard.stop(d)


# ---------------------------------------------------------------- flash-firmware backs up


@pytest.fixture
def fresh_1m(tmp_path_factory):
    d = tmp_path_factory.mktemp("vboard-fw")
    port = vboard.start(d, flash="1M")
    yield port, d / "flash.bin"
    vboard.stop(d)


def test_flash_firmware_backs_up_and_lists_what_it_erases(fresh_1m, ca_bin, cert_bin, tmp_path, capsys):
    port, image_file = fresh_1m
    for cmd, data in (("flash-ca", ca_bin), ("flash-cert", cert_bin)):
        rc, out, err = run([cmd, "--port", port, write_file(tmp_path, "x.bin", data)], capsys)
        assert rc == 0, err
    before = image_file.read_bytes()  # the board's whole flash, filesystem included
    firmware = _firmware_image(0x30000)
    rc, out, err = run(["flash-firmware", "--port", port, "--backup-dir", str(tmp_path / "fwbk"),
                        write_file(tmp_path, "fw.bin", firmware)], capsys)
    assert rc == 0, err
    assert "Erasing the whole flash destroys" in out
    assert "the MicroPython firmware image (0x0..0x8E1B3)" in out
    assert "a CA bin, esp_ca_cert.bin (ca.cer) at sector 0x98" in out
    assert "a device certificate bin, esp_cert_private_key.bin (certificate, private_key) at sector 0x97" in out
    assert "MicroPython's filesystem (" in out and "in use: your files" in out
    saved = sorted((tmp_path / "fwbk").glob("flash-0x000000-*.bin"))
    assert len(saved) == 1 and "Backup of the whole flash" in out and str(saved[0]) in out
    assert "esptool --port %s write-flash 0 %s" % (port, saved[0]) in out
    assert saved[0].read_bytes() == before  # the whole flash as it was, byte for byte
    after = esptool_read(port, 0, len(firmware), tmp_path)
    assert after[4:] == firmware[4:]
    # The whole-flash backup is not something flash-ca --restore takes.
    rc, out, err = run(["flash-ca", "--port", port, "--restore", str(saved[0])], capsys)
    refused(rc, err, "whole-flash backup", "write-flash 0")


def test_flash_firmware_accepts_the_virtual_boards_image(fresh_1m, tmp_path, capsys):
    port, image_file = fresh_1m
    flash_bytes = image_file.read_bytes()
    fw_len = struct.unpack_from("<I", flash_bytes, 0x8FFC)[0]
    own = flash_bytes[: fw_len + 16]  # the image as the virtual board made it, MD5 included
    rc, out, err = run(["flash-firmware", "--port", port, "--no-backup", write_file(tmp_path, "own.bin", own)],
                       capsys)
    assert rc == 0, err
    assert "--no-backup: nothing saved" in out and "verified" in out
    assert esptool_read(port, 0, len(own), tmp_path)[4:] == own[4:]
