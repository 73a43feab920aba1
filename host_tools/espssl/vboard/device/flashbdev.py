# The ESP8266 port's `flashbdev` for the virtual board: the block device of the
# filesystem that lives inside the flash image, at the profile's filesystem
# region [ESPSSL_VBOARD_FS_START, ESPSSL_VBOARD_FS_END) (half-open, bytes).
# Same interface as the ESP8266's frozen flashbdev.py (typings/flashbdev.pyi):
# FlashBdev(start_sec, blocks), module globals `bdev`, `size`, `start_sec`.
# Every block access goes through esp.flash_read/flash_write/flash_erase, so
# the filesystem really is in the image: `esptool erase-flash` wipes it and a
# sector written over it corrupts it.
from os import getenv as _getenv  # the unix port's (the board's os has none)

import esp


class FlashBdev:
    SEC_SIZE = 4096  # SPI_FLASH_SEC_SIZE

    def __init__(self, start_sec, blocks):
        self.start_sec = start_sec
        self.blocks = blocks

    def readblocks(self, n, buf, off=0):
        esp.flash_read((n + self.start_sec) * self.SEC_SIZE + off, buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:  # FAT-style whole-block write: erase first
            esp.flash_erase(n + self.start_sec)
            off = 0
        esp.flash_write((n + self.start_sec) * self.SEC_SIZE + off, buf)

    def ioctl(self, op, arg):
        if op == 4:  # MP_BLOCKDEV_IOCTL_BLOCK_COUNT
            return self.blocks
        if op == 5:  # MP_BLOCKDEV_IOCTL_BLOCK_SIZE
            return self.SEC_SIZE
        if op == 6:  # MP_BLOCKDEV_IOCTL_BLOCK_ERASE
            esp.flash_erase(arg + self.start_sec)
            return 0
        return None


def _region():
    start = int(_getenv("ESPSSL_VBOARD_FS_START") or "0")
    end = int(_getenv("ESPSSL_VBOARD_FS_END") or "0")
    return start, end


size = esp.flash_size()
_start, _end = _region()
start_sec = _start // FlashBdev.SEC_SIZE
if size < 1024 * 1024 or _end <= _start:
    bdev = None  # 512K builds have no filesystem
else:
    bdev = FlashBdev(start_sec, (_end - _start) // FlashBdev.SEC_SIZE)
