# The ESP8266 port's `vfs` module for the virtual board.  vboard_boot.py
# installs it as sys.modules["vfs"] in place of the unix port's, which has
# VfsPosix (the host's files) and, in every build, VfsRom.  A board has
# mount/umount, VfsLfs2 and VfsFat, and in the FLASH_2M_ROMFS variant also
# VfsRom and rom_ioctl over its ROMFS partition (ports/esp8266/vfs_rom_ioctl.c):
#
#   rom_ioctl(1)                 number of ROMFS segments: 1
#   rom_ioctl(2, id)             the segment: a memoryview of the mapped flash
#   rom_ioctl(3, id, n)          erase n bytes from the segment's start (whole
#                                sectors); returns the minimum write size, 4
#   rom_ioctl(4, id, off, buf)   program buf at off (NOR: bits only clear),
#                                len rounded up to 4; returns 0
#   anything else                -EINVAL (22)
#
# As on a board, the segment id is not checked and neither is the length
# against the partition: an erase past it goes on into the filesystem.
# The mapped bytes are esp._rom (see esp.py): they live outside the user's heap.
from vfs import VfsFat, VfsLfs2, mount, umount  # noqa: F401  (re-exported)

import esp

_EINVAL = 22
_SECTOR = 4096
_seg = None  # the one memoryview handed out, as the port's static object


def _romfs():
    # Called by vboard_boot.py once esp._rom_load() mapped the partition.
    global _seg, VfsRom, rom_ioctl
    from vfs import VfsRom

    _seg = memoryview(esp._rom)
    rom_ioctl = _rom_ioctl


def _rom_ioctl(op, id=0, a=0, b=None):
    # No *args: a call makes nothing on the heap, as the port's C function.
    if op == 1:
        return 1
    if op == 2:
        return _seg
    if op == 3:
        sector = esp._rom_start // _SECTOR
        for i in range((a + _SECTOR - 1) // _SECTOR):
            esp.flash_erase(sector + i)
        return 4
    if op == 4:
        # The port programs (len + 3) & ~3 bytes: what follows an odd-sized
        # buffer is whatever memory holds; here it is left erased (0xFF).
        n = len(b) & ~3
        esp.flash_write(esp._rom_start + a, memoryview(b)[:n] if n < len(b) else b)
        if n < len(b):
            tail = bytearray(b"\xff\xff\xff\xff")
            for i in range(len(b) - n):
                tail[i] = b[n + i]
            esp.flash_write(esp._rom_start + a + n, tail)
        return 0
    return -_EINVAL
