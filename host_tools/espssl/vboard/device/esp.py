# The ESP8266 port's `esp` module for the virtual board (MicroPython unix port).
#
# The SPI flash is the board's image file (ESPSSL_VBOARD_FLASH), with NOR
# semantics as on the real chip: flash_erase() sets a 4 KiB sector to 0xFF,
# flash_write() can only clear bits (the new byte is old AND data).  Every call
# seeks and reads/writes the file itself: nothing is cached, so what esptool
# (the board's serial loader) wrote is what flash_read() returns.
#
# The file is opened once, on first use, and kept open: vboard_boot.py unmounts
# the host filesystem from '/' (the board's own filesystem goes there), after
# which the image path could no longer be opened.  An open descriptor reads and
# writes the same file; the board's MicroPython is restarted after every loader
# session anyway.
#
# Signatures follow the ESP8266 port (typings/esp.pyi); errors too: a failed
# flash operation raises OSError(EIO), as SPI_FLASH_RESULT_ERR does there.
#
# Heap: on a board these calls take nothing from the GC heap; here the
# buffers they need (a sector of 0xFF for erase, a sector of scratch for the
# NOR AND) are made once at import, while vboard_boot.py loads the device
# modules (outside the user's heap), and every call works in place.
#
# ROMFS (the FLASH_2M_ROMFS variant, ESPSSL_VBOARD_ROMFS="start,end"): on a
# board that flash region is memory-mapped, and vfs.rom_ioctl(2) hands out a
# memoryview of it.  Here _rom_load() (vboard_boot.py, at boot) reads the region
# into one bytearray, also outside the user's heap; flash_write/flash_erase
# keep it equal to the image, so the map always shows what the flash holds.
from os import getenv as _getenv  # the unix port's (the board's os has none)

from micropython import const

_SECTOR = const(4096)  # SPI_FLASH_SEC_SIZE
_ERASED = const(0xFF)
_WINBOND = const(0xEF)  # JEDEC manufacturer of the emulated chip (W25Q family)
_W25Q = const(0x40)  # its memory type byte
_EIO = const(5)

SLEEP_NONE = const(0)
SLEEP_LIGHT = const(1)
SLEEP_MODEM = const(2)

_file = None  # the image file, opened on first use
_ff = b"\xff" * _SECTOR  # what an erased sector holds
_scratch = bytearray(_SECTOR)  # flash_write's read-modify-write buffer
_rom = None  # the ROMFS region's bytes (bytearray) once _rom_load() ran, else None
_rom_start = 0  # its flash offset
_size = 0  # flash size in bytes (ESPSSL_VBOARD_FLASH_SIZE or the file's size)
_sleep = 2  # sleep_type(): the SDK's default is modem sleep


def _env_int(name, default):
    v = _getenv(name)
    if not v:
        return default
    return int(v)


def _flash():
    global _file, _size
    if _file is None:
        path = _getenv("ESPSSL_VBOARD_FLASH")
        if not path:
            raise OSError(_EIO)
        _file = open(path, "r+b")
        _size = _env_int("ESPSSL_VBOARD_FLASH_SIZE", 0)
        if not _size:
            _size = _file.seek(0, 2)
    return _file


def _check(offset, n):
    f = _flash()
    if offset < 0 or n < 0 or offset + n > _size:
        raise OSError(_EIO)
    f.seek(offset)
    return f


def flash_read(byte_offset, length_or_buffer):
    """Read flash: an int length returns bytes; a buffer is filled in place (returns None)."""
    if isinstance(length_or_buffer, int):
        data = _check(byte_offset, length_or_buffer).read(length_or_buffer)  # one object, as the port's
        if len(data) != length_or_buffer:
            raise OSError(_EIO)
        return data
    n = len(length_or_buffer)
    if _check(byte_offset, n).readinto(length_or_buffer) != n:
        raise OSError(_EIO)
    return None


def flash_write(byte_offset, bytes):
    """Program flash: NOR, each byte becomes old AND new; no erase.  len % 4 == 0."""
    n = len(bytes)
    if n & 3:
        raise ValueError("len must be multiple of 4")
    f = _check(byte_offset, n)
    done = 0
    while done < n:
        k = min(n - done, _SECTOR)
        off = byte_offset + done
        r = off - _rom_start
        if _rom is not None and 0 <= r and r + k <= len(_rom):
            buf = _rom  # the mapped copy holds the old content: AND in place there
        else:
            buf, r = _scratch, 0
            f.seek(off)
            f.readinto(_scratch, k)
        for i in range(k):
            buf[r + i] &= bytes[done + i]
        f.seek(off)
        f.write(buf, r, k)
        if _rom is not None and buf is _scratch:
            _rom_sync(off, k)  # a write across the region's edge
        done += k
    f.flush()


def flash_erase(sector_no):
    """Erase one 4 KiB sector to 0xFF."""
    f = _check(sector_no * _SECTOR, _SECTOR)
    f.write(_ff)
    f.flush()
    if _rom is not None:
        for i in range(_SECTOR):
            _scratch[i] = 0xFF
        _rom_sync(sector_no * _SECTOR, _SECTOR)


def _rom_sync(off, k):
    # Copy the K bytes at OFF just written (held in _scratch) into the mapped
    # ROMFS region, where they overlap it.
    a = max(off, _rom_start)
    b = min(off + k, _rom_start + len(_rom))
    for i in range(a, b):
        _rom[i - _rom_start] = _scratch[i - off]


def _rom_load():
    """Map the ROMFS region (ESPSSL_VBOARD_ROMFS "start,end") into memory; None without one."""
    global _rom, _rom_start
    spec = _getenv("ESPSSL_VBOARD_ROMFS")
    if not spec:
        return None
    start, end = (int(x) for x in spec.split(","))
    buf = bytearray(end - start)
    _rom_start = start
    flash_read(start, buf)
    _rom = buf
    return _rom


def flash_size():
    """Size of the flash chip in bytes."""
    _flash()
    return _size


def flash_user_start():
    """First byte after the firmware region, as the ESP8266 port reports it.

    1 MiB builds: 0x98000 (the filesystem starts one reserved sector later);
    2 MiB+ builds: 0x100000 (the filesystem starts there); FLASH_2M_ROMFS:
    the firmware ends at 0xB0000 and the ROMFS (320 KiB) follows, so 0x100000
    too (modesp.c adds the ROMFS size to the firmware size).
    """
    spec = _getenv("ESPSSL_VBOARD_ROMFS")
    if spec:
        return int(spec.split(",")[1])
    start = _env_int("ESPSSL_VBOARD_FS_START", 0)
    if not start:
        return 0x100000 if flash_size() > 0x100000 else 0x98000
    if start < 0x100000:
        return start - _SECTOR
    return start


def flash_id():
    """JEDEC id as spi_flash_get_id() returns it: capacity << 16 | type << 8 | maker."""
    size = flash_size()
    cap = 0
    while (1 << cap) < size:
        cap += 1
    return cap << 16 | _W25Q << 8 | _WINBOND


def osdebug(uart_no, level=None):
    """No SDK debug output on the virtual board: accepted and ignored."""


def sleep_type(sleep_type=None):
    """Get or set the WiFi sleep type (SLEEP_NONE/LIGHT/MODEM); no effect here."""
    global _sleep
    if sleep_type is None:
        return _sleep
    _sleep = sleep_type
    return None
