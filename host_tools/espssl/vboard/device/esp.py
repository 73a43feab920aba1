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
        buf = bytearray(length_or_buffer)
        ret = True
    else:
        buf = length_or_buffer
        ret = False
    mv = memoryview(buf)
    f = _check(byte_offset, len(mv))
    got = 0
    while got < len(mv):
        n = f.readinto(mv[got:])
        if not n:
            raise OSError(_EIO)
        got += n
    if ret:
        return bytes(buf)
    return None


def flash_write(byte_offset, bytes):
    """Program flash: NOR, each byte becomes old AND new; no erase.  len % 4 == 0."""
    data = memoryview(bytes)
    n = len(data)
    if n & 3:
        raise ValueError("len must be multiple of 4")
    f = _check(byte_offset, n)
    old = bytearray(n)
    f.readinto(old)
    for i in range(n):
        old[i] &= data[i]
    f.seek(byte_offset)
    f.write(old)
    f.flush()


def flash_erase(sector_no):
    """Erase one 4 KiB sector to 0xFF."""
    f = _check(sector_no * _SECTOR, _SECTOR)
    f.write(b"\xff" * _SECTOR)
    f.flush()


def flash_size():
    """Size of the flash chip in bytes."""
    _flash()
    return _size


def flash_user_start():
    """First byte after the firmware region, as the ESP8266 port reports it.

    1 MiB builds: 0x98000 (the filesystem starts one reserved sector later);
    2 MiB+ builds: 0x100000 (the filesystem starts there).
    """
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
