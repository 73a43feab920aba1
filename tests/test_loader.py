"""The virtual board's serial loader, driven by the REAL esptool (unmodified) over a pty.

Each esptool run is a subprocess (`python -m esptool --port /dev/pts/N --before
no-reset --after soft-reset ...`) talking to vboard.loader_server.LoaderServer,
which feeds espssl.vboard.loader.Loader.  Byte-level tests of SLIP, the Loader
and the flash image come first; they need no esptool.
"""

import hashlib
import os
import struct
import subprocess
import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espssl import layout
from espssl.errors import EspsslError
from espssl.vboard import flashimage, loader, slip
from espssl.vboard.flashimage import FlashImage
from espssl.vboard.loader_server import LoaderServer

SECTOR = 4096


# -- helpers -----------------------------------------------------------------------------
def make_image(tmp_path, profile="esp8266-4m"):
    path = tmp_path / "flash.bin"
    flashimage.create(path, layout.load(profile))
    return path


def image_bytes(path, off=0, n=None):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n) if n is not None else f.read()


def esptool(port, *args, stub=True, check=True):
    """Run the real esptool CLI against PORT; return the CompletedProcess."""
    cmd = [sys.executable, "-m", "esptool", "--port", port, "--before", "no-reset",
           "--after", "soft-reset"]
    if not stub:
        cmd.append("--no-stub")
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("esptool %s failed (%d):\n%s\n%s" % (args, r.returncode, r.stdout,
                                                                  r.stderr))
    return r


def request(op, data=b"", chk=0):
    """One SLIP-framed loader request, as esptool builds it."""
    return slip.encode(struct.pack("<BBHI", 0, op, len(data), chk) + data)


def replies(raw):
    """Decoded reply frames: list of (op, val, body)."""
    out = []
    for f in slip.Decoder().feed(raw):
        direction, op, n, val = struct.unpack_from("<BBHI", f)
        assert direction == 1 and n == len(f) - 8
        out.append((op, val, f[8:]))
    return out


def checksum(data):
    c = 0xEF
    for b in data:
        c ^= b
    return c


@pytest.fixture
def board(tmp_path):
    path = make_image(tmp_path)
    with LoaderServer(path) as srv:
        srv.image = path
        yield srv


# -- SLIP ----------------------------------------------------------------------------------
def test_slip_escapes_and_splits():
    payload = b"\x01\xc0\x02\xdb\x03"
    frame = slip.encode(payload)
    assert frame == b"\xc0\x01\xdb\xdc\x02\xdb\xdd\x03\xc0"
    d = slip.Decoder()
    stream = b"noise" + frame + slip.encode(b"xy")
    got = []
    for i in range(len(stream)):  # one byte at a time
        got += d.feed(stream[i : i + 1])
    assert got == [payload, b"xy"]
    assert d.garbage == 5


def test_slip_bad_escape_dropped():
    d = slip.Decoder()
    assert d.feed(b"\xc0a\xdb\x01b\xc0\xc0ok\xc0") == [b"ok"]
    assert d.errors == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8), st.integers(1, 17))
def test_slip_roundtrip_any_chunking(payloads, step):
    stream = b"".join(slip.encode(p) for p in payloads)
    d = slip.Decoder()
    got = []
    for i in range(0, len(stream), step):
        got += d.feed(stream[i : i + step])
    assert got == payloads and d.errors == 0 and d.garbage == 0


# -- flash image -----------------------------------------------------------------------------
def test_create_4m_image_layout(tmp_path):
    path = make_image(tmp_path)
    data = image_bytes(path)
    assert len(data) == 0x400000
    assert data[0] == 0xE9 and data[3] == 0x40  # magic, 4 MB flash size nibble
    n = struct.unpack_from("<I", data, layout.FIRMWARE_LEN_OFFSET)[0]
    assert n == flashimage.FIRMWARE_LEN["default"]
    assert data[n : n + 16] == hashlib.md5(data[4:n]).digest()  # makeimg.py's MD5 (bytes 0..3 are esptool's)
    assert data[n + 16 :] == b"\xff" * (len(data) - n - 16)
    prof = layout.load("esp8266-4m")
    assert 0x9A000 <= n < 0x100000 - 16
    assert prof.default_ca_sector in layout.free_sectors(prof, n)


def test_create_1m_image_fits_1m_layout(tmp_path):
    path = make_image(tmp_path, "esp8266-1m")
    with FlashImage(path) as f:
        assert f.size == 0x100000
        n = f.firmware_len()
        assert f.read(0, 1) == b"\xe9" and f.read(3, 1) == b"\x20"
    prof = layout.load("esp8266-1m")
    layout.check_firmware_len(prof, n)
    assert n + 16 <= 0x97000  # leaves the default certificate sector 0x97 free
    assert layout.free_sectors(prof, n)[-2:] == [0x97, 0x98]


def test_esptool_image_info_accepts_header(tmp_path):
    path = make_image(tmp_path)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(image_bytes(path, 0, layout.FIRMWARE_LEN_OFFSET))
    r = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp8266", "image-info",
                        str(fw)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Checksum: " in r.stdout and "(valid)" in r.stdout
    assert "Segments: 3" in r.stdout or "3 segments" in r.stdout.lower()


def test_nor_semantics(tmp_path):
    path = make_image(tmp_path)
    with FlashImage(path) as f:
        off = 0xF0000
        f.write(off, b"\x0f\xf0\xaa")
        f.write(off, b"\xf3\x3f\xff")  # bits only clear
        assert f.read(off, 4) == b"\x03\x30\xaa\xff"
        f.erase(off, SECTOR)
        assert f.read(off, SECTOR) == b"\xff" * SECTOR
        with pytest.raises(EspsslError, match="whole 4 KiB sectors"):
            f.erase(off + 1, SECTOR)
        with pytest.raises(EspsslError, match="outside"):
            f.read(f.size - 2, 4)
    assert os.path.getsize(path) == 0x400000


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2 * SECTOR - 1), st.binary(min_size=1, max_size=64)),
                max_size=12))
def test_nor_writes_only_clear_bits(tmp_path_factory, writes):
    """Against a model: every write ANDs into the sector; an erase restores 0xFF."""
    path = tmp_path_factory.mktemp("nor") / "f.bin"
    path.write_bytes(b"\xff" * 0x80000)
    model = bytearray(b"\xff" * 2 * SECTOR)
    with FlashImage(path) as f:
        for off, data in writes:
            data = data[: 2 * SECTOR - off]
            f.write(0x10000 + off, data)
            for i, b in enumerate(data):
                model[off + i] &= b
        assert f.read(0x10000, 2 * SECTOR) == bytes(model)
        f.erase(0x10000, SECTOR)
        assert f.read(0x10000, 2 * SECTOR) == b"\xff" * SECTOR + bytes(model[SECTOR:])


def test_flash_image_rejects_wrong_size(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\xff" * 1000)
    with pytest.raises(EspsslError, match="not a flash image"):
        FlashImage(bad)


# -- the Loader, byte by byte ------------------------------------------------------------------
def test_looks_like_sync():
    sync = request(loader.SYNC, loader.SYNC_DATA)
    assert loader.looks_like_sync(sync)
    assert loader.looks_like_sync(sync[:3]) and loader.looks_like_sync(sync[:20])
    assert not loader.looks_like_sync(b"\xc0\x00\x0a")
    assert not loader.looks_like_sync(b"import os\r\n")
    assert not loader.looks_like_sync(request(loader.SYNC, b"\x07\x07\x12\x21" + b"U" * 32))


def test_rom_sync_register_and_errors(tmp_path):
    with FlashImage(make_image(tmp_path)) as f:
        ld = loader.Loader(f)
        r = replies(ld.feed(b"\r\n>>> " + request(loader.SYNC, loader.SYNC_DATA)))
        assert r == [(loader.SYNC, 0x20120707, b"\x00\x00")] * 8
        r = replies(ld.feed(request(loader.READ_REG, struct.pack("<I", 0x40001000))))
        assert r == [(loader.READ_REG, 0xFFF0C101, b"\x00\x00")]
        # GET_SECURITY_INFO is not an ESP8266 ROM command: status failed, 0x05 invalid.
        assert replies(ld.feed(request(0x14))) == [(0x14, 0, b"\x01\x05")]
        # Stub-only commands are unknown to the ROM too.
        assert replies(ld.feed(request(loader.ERASE_FLASH))) == [(0xD0, 0, b"\x01\x05")]
        # A data block with a wrong checksum: 0x07.
        ld.feed(request(loader.MEM_BEGIN, struct.pack("<IIII", 4, 1, 0x1800, 0x40100000)))
        block = struct.pack("<IIII", 4, 0, 0, 0) + b"abcd"
        assert replies(ld.feed(request(loader.MEM_DATA, block, checksum(b"abcd") ^ 1))) == [
            (loader.MEM_DATA, 0, b"\x01\x07")]
        assert not ld.stub and not ld.finished


def test_stub_start_says_ohai_then_stub_status(tmp_path):
    with FlashImage(make_image(tmp_path)) as f:
        ld = loader.Loader(f)
        ld.feed(request(loader.MEM_BEGIN, struct.pack("<IIII", 4, 1, 0x1800, 0x4010E000)))
        ld.feed(request(loader.MEM_DATA, struct.pack("<IIII", 4, 0, 0, 0) + b"abcd",
                        checksum(b"abcd")))
        raw = ld.feed(request(loader.MEM_END, struct.pack("<II", 0, 0x4010E004)))
        frames = slip.Decoder().feed(raw)
        assert frames[1] == b"OHAI" and len(frames) == 2
        assert ld.stub
        assert replies(ld.feed(request(loader.SYNC, loader.SYNC_DATA)))[0][1] == 0
        # Stub status: a code then 0 (0xC3 invalid command).
        assert replies(ld.feed(request(0x14))) == [(0x14, 0, b"\xc3\x00")]
        # Out of flash: SPI operation failed (0xC4); the flash is untouched.
        r = replies(ld.feed(request(loader.ERASE_REGION, struct.pack("<II", 0x3FF000, 0x2000))))
        assert r == [(loader.ERASE_REGION, 0, b"\xc4\x00")]
        # A deflate stream writing more than announced: 0xC9.
        ld.feed(request(loader.FLASH_DEFL_BEGIN, struct.pack("<IIIII", 16, 1, 0x4000, 0xF0000, 0)))
        z = zlib.compress(b"\x00" * 32)
        r = replies(ld.feed(request(loader.FLASH_DEFL_DATA,
                                    struct.pack("<IIII", len(z), 0, 0, 0) + z, checksum(z))))
        assert r == [(loader.FLASH_DEFL_DATA, 0, b"\xc9\x00")]
        raw = ld.feed(request(loader.RUN_USER_CODE))
        assert raw == b"" and ld.finished


def test_rom_erase_bug_emulated(tmp_path):
    """FLASH_BEGIN in the ROM erases n + min(16 - first % 16, n) sectors."""
    with FlashImage(make_image(tmp_path)) as f:
        for s in range(0xC0, 0xD0):
            f.write(s * SECTOR, b"\x00" * SECTOR)
        ld = loader.Loader(f)
        ld.feed(request(loader.FLASH_BEGIN, struct.pack("<IIII", 2 * SECTOR, 8, 0x400, 0xC3000)))
        erased = [s for s in range(0xC0, 0xD0) if f.read(s * SECTOR, 1) == b"\xff"]
        assert erased == [0xC3, 0xC4, 0xC5, 0xC6]  # 2 asked, 2 + min(13, 2) erased


# -- real esptool over a pty ----------------------------------------------------------------------
def test_chip_id_ends_session_with_soft_reset(board):
    first = []
    feed = board.loader.feed

    def recording_feed(data):
        first.append(bytes(data))
        return feed(data)

    board.loader.feed = recording_feed
    r = esptool(board.port, "chip-id")
    # What the REPL router sniffs for is what esptool really sends first.
    assert loader.looks_like_sync(first[0])
    assert "Chip type:          ESP8266EX" in r.stdout
    assert "Crystal frequency:  26MHz" in r.stdout
    assert "Stub flasher running." in r.stdout
    assert "Chip ID: 0x%08x" % loader.chip_id(loader.DEFAULT_MAC) in r.stdout
    assert len(board.sessions) == 1
    assert board.sessions[0].commands[-1] == loader.RUN_USER_CODE  # soft-reset from the stub


def test_read_mac_rom_only(board):
    r = esptool(board.port, "read-mac", stub=False)
    assert "MAC:                18:fe:34:a1:b2:c3" in r.stdout
    assert "Uploading stub" not in r.stdout
    # The ROM's "run user code": FLASH_BEGIN(0, 0) + FLASH_END(1) ends the session.
    assert len(board.sessions) == 1 and board.sessions[0].commands[-2:] == [2, 4]


@pytest.mark.parametrize("profile,device,size", [("esp8266-4m", "4016", "4MB"),
                                                 ("esp8266-1m", "4014", "1MB")])
def test_flash_id(tmp_path, profile, device, size):
    with LoaderServer(make_image(tmp_path, profile)) as srv:
        r = esptool(srv.port, "flash-id")
    assert "Manufacturer: ef" in r.stdout
    assert "Device: %s" % device in r.stdout
    assert "Detected flash size: %s" % size in r.stdout
    assert "XMC" not in r.stdout and "Failed to communicate" not in r.stdout


@pytest.mark.parametrize("mode", ["compressed", "uncompressed", "rom"])
def test_write_read_verify_4k(board, tmp_path, mode):
    off = 0xF0000
    data = os.urandom(SECTOR)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    with FlashImage(board.image) as f:  # something in the neighbours, to see what is erased
        f.write(off - SECTOR, b"\x11" * SECTOR)
        f.write(off + SECTOR, b"\x22" * SECTOR)
    args = ["write-flash"] + (["-u"] if mode == "uncompressed" else []) + [hex(off), str(src)]
    r = esptool(board.port, *args, stub=mode != "rom")
    assert "Wrote 4096 bytes" in r.stdout
    if mode != "rom":
        assert "Hash of data verified." in r.stdout
    assert image_bytes(board.image, off, SECTOR) == data
    assert image_bytes(board.image, off - SECTOR, SECTOR) == b"\x11" * SECTOR
    # The stub erases exactly; the ROM's erase bug takes the next sector too.
    after = b"\xff" if mode == "rom" else b"\x22"
    assert image_bytes(board.image, off + SECTOR, SECTOR) == after * SECTOR
    back = tmp_path / "back.bin"
    esptool(board.port, "read-flash", hex(off), "4096", str(back))
    assert back.read_bytes() == data
    r = esptool(board.port, "verify-flash", hex(off), str(src))
    assert "Verification successful (digest matched)." in r.stdout
    assert len(board.sessions) == 3


def test_rom_multi_sector_write_lands_intact(board, tmp_path):
    """Without the stub esptool shrinks the erase size for the ROM bug; the data must survive."""
    data = os.urandom(40 * SECTOR + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with FlashImage(board.image) as f:
        f.write(0xC0000, b"\x00" * 0x40000)  # dirty, so a missed erase would show
    esptool(board.port, "write-flash", "0xC3000", str(src), stub=False)
    assert image_bytes(board.image, 0xC3000, len(data)) == data


def test_verify_flash_detects_mismatch(board, tmp_path):
    src = tmp_path / "data.bin"
    src.write_bytes(b"\x00" * SECTOR)
    r = esptool(board.port, "verify-flash", "0xF0000", str(src), check=False)
    assert r.returncode != 0
    assert "Verification failed (digest mismatch)." in r.stdout
    assert "A fatal error occurred: Verification failed." in r.stderr


def test_read_flash_large_region_flow_control(board, tmp_path):
    """1 MiB = 256 blocks of 4 KiB: more than the 64 the stub keeps in flight."""
    back = tmp_path / "fw.bin"
    esptool(board.port, "read-flash", "0", "0x100000", str(back))
    assert back.read_bytes() == image_bytes(board.image, 0, 0x100000)


def test_erase_region_leaves_ff(board, tmp_path):
    with FlashImage(board.image) as f:
        f.write(0xEF000, b"\x00" * 4 * SECTOR)
    esptool(board.port, "erase-region", "0xF0000", "0x2000")
    assert image_bytes(board.image, 0xF0000, 0x2000) == b"\xff" * 0x2000
    assert image_bytes(board.image, 0xEF000, SECTOR) == b"\x00" * SECTOR
    assert image_bytes(board.image, 0xF2000, SECTOR) == b"\x00" * SECTOR


def test_erase_flash_wipes_everything(board):
    assert image_bytes(board.image, 0, 1) == b"\xe9"
    esptool(board.port, "erase-flash")
    assert image_bytes(board.image) == b"\xff" * 0x400000
    with FlashImage(board.image) as f:
        assert f.firmware_len() == 0xFFFFFFFF


def test_write_firmware_at_zero_and_back(board, tmp_path):
    """Flashing a MicroPython-shaped firmware: esptool keeps the header's flash params."""
    fw = flashimage.firmware_image(0x400000, 0x9C000)
    src = tmp_path / "fw.bin"
    src.write_bytes(fw)
    esptool(board.port, "write-flash", "0", str(src))
    got = image_bytes(board.image, 0, len(fw))
    assert got == fw
    with FlashImage(board.image) as f:
        assert f.firmware_len() == 0x9C000


def test_stub_stays_then_rom_again(board):
    """--after no-reset-stub keeps the stub (the next run skips the upload, baud change
    included); --after no-reset leaves the stub for the ROM loader; neither ends the session."""
    r = esptool(board.port, "--baud", "921600", "flash-id")  # soft-reset: session 1
    r = subprocess.run([sys.executable, "-m", "esptool", "--port", board.port, "--before",
                        "no-reset", "--after", "no-reset-stub", "--baud", "921600", "read-mac"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Changing baud rate to 921600" in r.stdout
    assert board.loader.stub and board.loader.baud == 921600
    r = subprocess.run([sys.executable, "-m", "esptool", "--port", board.port, "--before",
                        "no-reset", "--after", "no-reset", "chip-id"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Stub flasher is already running. No upload is necessary." in r.stdout
    assert not board.loader.stub and not board.loader.finished
    assert len(board.sessions) == 1
