"""The virtual board's SPI NOR flash: one image file, the board's persistent state.

NOR semantics, as on the ESP8266's flash chip: ``erase`` sets whole 4 KiB
sectors to 0xFF, ``write`` can only clear bits (the new byte is the AND of the
old one and the data).  Every call goes straight to the file (pread/pwrite), so
another process (the board's MicroPython ``esp`` module) sees it at once.

``create(path, profile)`` makes a fresh image for a board profile: a MicroPython
firmware image laid out as MicroPython's ``makeimg.py`` does (an ESP8266 v1
image header with RAM segments, padding to 0x8FFC, the length word, the irom0
text from 0x9000, then the MD5), the rest erased.  The firmware bytes are
pseudo-random filler, fixed per profile: only the layout is real.
"""

import hashlib
import os
import random
import struct

from ..errors import EspsslError
from ..layout import FIRMWARE_LEN_OFFSET, SECTOR

ERASED = 0xFF
MIN_SIZE = 512 * 1024  # smallest ESP8266 flash
MAX_SIZE = 16 * 1024 * 1024  # largest the ESP8266 addresses

# esptool's ESP8266 image v1 header: magic 0xE9, segment count, flash mode,
# flash size/frequency nibbles, entry point.
IMAGE_MAGIC = 0xE9
_FLASH_MODE_DIO = 0x02
_FLASH_SIZE_NIBBLE = {  # esptool ESP8266ROM.FLASH_SIZES, 40 MHz in the low nibble
    0x80000: 0x00,
    0x100000: 0x20,
    0x200000: 0x30,
    0x400000: 0x40,
    0x800000: 0x80,
    0x1000000: 0x90,
}
_CHECKSUM_SEED = 0xEF  # the ROM's image checksum starts here (XOR of segment data)
_IROM_START = 0x9000  # makeimg.py: the irom0 text is stored from here

# Realistic lengths for the word at 0x8FFC: MicroPython 1.2x images.
FIRMWARE_LEN = {
    0x100000: 0x8E1A4,  # ESP8266_GENERIC FLASH_1M build (~570 KB)
    "default": 0x9A3B8,  # ESP8266_GENERIC 2 MiB+ build (~617 KB)
}


class FlashImage:
    """A flash image file with NOR semantics.  Use as a context manager or close()."""

    def __init__(self, path):
        self.path = str(path)
        try:
            self._fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            raise EspsslError("cannot open flash image %s: %s" % (self.path, e.strerror)) from None
        size = os.fstat(self._fd).st_size
        if size < MIN_SIZE or size > MAX_SIZE or size & (size - 1):
            os.close(self._fd)
            self._fd = None
            raise EspsslError(
                "%s is %d bytes: not a flash image (a power of two from 512 KiB to 16 MiB)"
                % (self.path, size)
            )
        self.size = size

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self, off, n):
        if off < 0 or n < 0 or off + n > self.size:
            raise EspsslError(
                "flash access 0x%X..0x%X outside the %d-byte flash" % (off, off + n - 1, self.size)
            )

    def read(self, off, n):
        """N bytes from offset OFF."""
        self._check(off, n)
        out = os.pread(self._fd, n, off)
        if len(out) != n:
            raise EspsslError("short read of %s at 0x%X" % (self.path, off))
        return out

    def write(self, off, data):
        """Program DATA at OFF: each byte becomes old AND new (NOR: bits only clear)."""
        n = len(data)
        if not n:
            return
        old = self.read(off, n)
        new = (int.from_bytes(old, "little") & int.from_bytes(bytes(data), "little")).to_bytes(
            n, "little"
        )
        os.pwrite(self._fd, new, off)

    def erase(self, off, n):
        """Erase N bytes from OFF to 0xFF; both must be whole sectors."""
        if off % SECTOR or n % SECTOR:
            raise EspsslError(
                "erase 0x%X+0x%X is not whole 4 KiB sectors" % (off, n)
            )
        self._check(off, n)
        os.pwrite(self._fd, bytes([ERASED]) * n, off)

    def firmware_len(self):
        """The uint32 at 0x8FFC: MicroPython's image length (0xFFFFFFFF if erased)."""
        return struct.unpack("<I", self.read(FIRMWARE_LEN_OFFSET, 4))[0]


def firmware_image(flash_size, length):
    """A MicroPython-shaped firmware image of LENGTH bytes (+16 MD5) for FLASH_SIZE."""
    if not _IROM_START < length <= flash_size - 16:
        raise EspsslError("firmware length 0x%X does not fit" % length)
    rnd = random.Random(0x8266 ^ flash_size ^ length)
    # RAM segments as a MicroPython build has them: IRAM text, DRAM data, rodata.
    segments = [(0x40100000, 0x7A28), (0x3FFE8000, 0x0528), (0x3FFE8530, 0x0AEC)]
    out = bytearray(
        struct.pack(
            "<BBBBI",
            IMAGE_MAGIC,
            len(segments),
            _FLASH_MODE_DIO,
            _FLASH_SIZE_NIBBLE.get(flash_size, 0x40),
            0x40100004,  # entry point in IRAM
        )
    )
    chk = _CHECKSUM_SEED
    for addr, n in segments:
        body = rnd.randbytes(n)
        for b in body:
            chk ^= b
        out += struct.pack("<II", addr, n) + body
    # The checksum byte is the last of the 16-byte block after the segments.
    out += b"\x00" * (15 - len(out) % 16) + bytes([chk])
    assert len(out) < FIRMWARE_LEN_OFFSET
    out += bytes([ERASED]) * (FIRMWARE_LEN_OFFSET - len(out))
    out += struct.pack("<I", length)  # makeimg.py: 0x9000 + len(irom0 text)
    out += rnd.randbytes(length - _IROM_START)
    out += hashlib.md5(out[4:]).digest()  # makeimg.py: bytes 0..3 are esptool's to change
    return bytes(out)


def create(path, profile, firmware_len=None):
    """Write a fresh image for PROFILE (a layout.Profile) at PATH, atomically."""
    if firmware_len is None:
        firmware_len = FIRMWARE_LEN.get(profile.flash_size, FIRMWARE_LEN["default"])
    fw = firmware_image(profile.flash_size, firmware_len)
    path = str(path)
    tmp = path + ".tmp%d" % os.getpid()
    try:
        with open(tmp, "wb") as f:
            f.write(fw)
            f.write(bytes([ERASED]) * (profile.flash_size - len(fw)))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
