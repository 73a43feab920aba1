"""Board profiles (boards/*.json) and the guard that keeps flash writes out of harm's way.

A profile names the flash size and the regions of MicroPython's ESP8266 layout:
the firmware region, the ROMFS partition (the ``FLASH_2M_ROMFS`` variant only),
the filesystem and the SDK parameters at the end of flash.
Every region is a half-open byte range ``(start, end)``.  The firmware *image*
is usually much shorter than its region: its real length is the uint32 at
``FIRMWARE_LEN_OFFSET`` (0x8FFC, written by MicroPython's ``makeimg.py``), and
16 bytes of MD5 follow the image.  ``check_write`` refuses any write whose
erased sectors touch the image, the ROMFS partition, the filesystem, the SDK
parameters or lie outside the flash, and says what is there and which sectors are free.

This is a library: ``espssl flash-*`` and the virtual board use it.
"""

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LayoutError

SECTOR = 4096
FIRMWARE_LEN_OFFSET = 0x8FFC  # makeimg.py: uint32 LE = 0x9000 + len(irom0 text)
FIRMWARE_MD5_LEN = 16  # makeimg.py appends the image's MD5 after it
# makeimg.py pads the RAM segments to 0x9000 and stores 0x9000 + len(irom0): no
# real image is shorter than that.
_MIN_FIRMWARE_LEN = 0x9000

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"


@dataclass(frozen=True)
class Profile:
    """One board layout, as read from boards/NAME.json."""

    name: str
    flash_size: int
    firmware: tuple  # (start, end) of the firmware region
    filesystem: tuple | None  # (start, end); None when the build has none
    sdk_params: tuple  # (start, end) of the SDK parameter area
    romfs: tuple | None = None  # (start, end) of the ROMFS partition (FLASH_2M_ROMFS)
    variant: str = ""  # MicroPython's ESP8266_GENERIC variant ("" = the default 2 MiB+ build)
    default_ca_sector: int | None = None
    default_cert_sector: int | None = None
    facts: tuple = ()
    title: str = ""
    boards: tuple = ()
    supported: bool = True
    reason: str = ""  # why the layout is unsupported
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def sectors(self):
        """Number of 4 KiB sectors in the flash."""
        return self.flash_size // SECTOR


def _num(v):
    if v is None:
        return None
    return int(v, 0) if isinstance(v, str) else int(v)


def _span(v):
    if v is None:
        return None
    start, end = (_num(x) for x in v)
    return (start, end)


def _path(name):
    return BOARDS_DIR / (name + ".json")


def names(include_unsupported=False):
    """Names of the board profiles in boards/, supported ones only by default."""
    out = []
    for p in sorted(BOARDS_DIR.glob("*.json")):
        if include_unsupported or json.loads(p.read_text()).get("supported", True):
            out.append(p.stem)
    return out


def load(name, allow_unsupported=False):
    """The profile boards/NAME.json; LayoutError if unknown or (by default) unsupported."""
    path = _path(name)
    if "/" in name or "\\" in name or not path.is_file():
        raise LayoutError(
            "unknown board profile %r; known: %s" % (name, ", ".join(names(True)))
        )
    d = json.loads(path.read_text())
    known = {
        "name", "title", "boards", "supported", "reason", "flash_size", "firmware",
        "filesystem", "sdk_params", "default_ca_sector", "default_cert_sector", "facts",
        "romfs", "variant",
    }
    prof = Profile(
        name=d["name"],
        flash_size=_num(d["flash_size"]),
        firmware=_span(d["firmware"]),
        filesystem=_span(d.get("filesystem")),
        sdk_params=_span(d["sdk_params"]),
        romfs=_span(d.get("romfs")),
        variant=d.get("variant", ""),
        default_ca_sector=_num(d.get("default_ca_sector")),
        default_cert_sector=_num(d.get("default_cert_sector")),
        facts=tuple(d.get("facts", ())),
        title=d.get("title", ""),
        boards=tuple(d.get("boards", ())),
        supported=bool(d.get("supported", True)),
        reason=d.get("reason", ""),
        extra={k: v for k, v in d.items() if k not in known},
    )
    if not prof.supported and not allow_unsupported:
        raise LayoutError("board profile %s is not supported: %s" % (name, prof.reason))
    return prof


def for_flash_size(size, romfs=False):
    """The supported profile for a board whose flash is SIZE bytes (as esptool detects it).

    ROMFS: the board's firmware has a ROMFS partition (``vfs.rom_ioctl``: the
    FLASH_2M_ROMFS variant); the profile with that partition is chosen.
    """
    for n in names(include_unsupported=True):
        prof = load(n, allow_unsupported=True)
        if prof.flash_size == size and (prof.romfs is not None) == bool(romfs):
            if not prof.supported:
                raise LayoutError(
                    "%s flash (%s) is not supported: %s" % (_size_text(size), n, prof.reason)
                )
            return prof
    raise LayoutError(
        "no board profile for %s of flash%s; profiles: %s"
        % (_size_text(size), " with a ROMFS partition" if romfs else "", ", ".join(names(True)))
    )


def for_variant(variant, size):
    """The profile of MicroPython's ESP8266_GENERIC VARIANT ('', 'FLASH_1M', 'FLASH_2M_ROMFS', ...)
    on a board with SIZE bytes of flash; LayoutError naming the choices otherwise."""
    found = []
    for n in names(include_unsupported=True):
        prof = load(n, allow_unsupported=True)
        found.append("%s (%s, %s)" % (prof.variant or "default", n, _size_text(prof.flash_size)))
        if prof.variant == (variant or "") and prof.flash_size == size:
            return load(n)
    raise LayoutError(
        "no board profile for variant %s with %s of flash; known: %s"
        % (variant or "default", _size_text(size), ", ".join(found))
    )


def romfs_text(profile):
    """'the ROMFS partition (0xB0000..0xFFFFF, 320 KiB)' for a profile that has one."""
    s, e = profile.romfs
    return "the ROMFS partition (0x%X..0x%X, %s)" % (s, e - 1, _size_text(e - s))


def parse_firmware_len(word):
    """The firmware length from the 4 bytes read at FIRMWARE_LEN_OFFSET."""
    if len(word) != 4:
        raise LayoutError("need the 4 bytes at 0x%X, got %d" % (FIRMWARE_LEN_OFFSET, len(word)))
    return struct.unpack("<I", bytes(word))[0]


def check_firmware_len(profile, firmware_len):
    """LayoutError unless FIRMWARE_LEN is a plausible MicroPython image length for PROFILE."""
    if firmware_len == 0xFFFFFFFF:
        raise LayoutError(
            "no MicroPython firmware on the board: the length word at 0x%X is erased "
            "(0xFFFFFFFF); flash MicroPython first" % FIRMWARE_LEN_OFFSET
        )
    fw_start, fw_end = profile.firmware
    if not _MIN_FIRMWARE_LEN <= firmware_len <= fw_end - fw_start - FIRMWARE_MD5_LEN:
        raise LayoutError(
            "firmware length word at 0x%X reads 0x%X, which does not fit the %s firmware "
            "region 0x%X..0x%X: not a MicroPython %s image"
            % (FIRMWARE_LEN_OFFSET, firmware_len, profile.name, fw_start, fw_end - 1, profile.name)
        )


def image_end(firmware_len):
    """First byte after the firmware image and its MD5."""
    return firmware_len + FIRMWARE_MD5_LEN


def _size_text(n):
    if n % (1 << 20) == 0:
        return "%d MiB" % (n >> 20)
    if n % 1024 == 0:
        return "%d KiB" % (n >> 10)
    return "%d bytes" % n


size_text = _size_text  # public name: "4 MiB", "512 KiB"


def _occupied(profile, firmware_len):
    """(start, end, what) for each area a write must not touch."""
    fw_start = profile.firmware[0]
    out = [
        (
            fw_start,
            image_end(firmware_len),
            "the MicroPython firmware image (0x%X..0x%X, length 0x%X from 0x%X + MD5)"
            % (fw_start, image_end(firmware_len) - 1, firmware_len, FIRMWARE_LEN_OFFSET),
        )
    ]
    if profile.romfs is not None:
        s, e = profile.romfs
        note = profile.extra.get("romfs_note") or "of the %s firmware" % (profile.variant or "ROMFS")
        out.append((s, e, romfs_text(profile) + " " + note))
    if profile.filesystem is not None:
        s, e = profile.filesystem
        out.append((s, e, "MicroPython's filesystem (0x%X..0x%X)" % (s, e - 1)))
    s, e = profile.sdk_params
    out.append((s, e, "the SDK parameters (0x%X..0x%X, the last 20 KiB)" % (s, e - 1)))
    return out


def free_sectors(profile, firmware_len):
    """Sector numbers that hold neither the firmware image, ROMFS, the filesystem nor SDK params."""
    check_firmware_len(profile, firmware_len)
    busy = _occupied(profile, firmware_len)
    out = []
    for sec in range(profile.sectors):
        a, b = sec * SECTOR, (sec + 1) * SECTOR
        if not any(a < e and s < b for s, e, _ in busy):
            out.append(sec)
    return out


def sector_ranges_text(sectors):
    """[0x98] -> '0x98'; [0x9B..0xFF] -> '0x9B-0xFF'; several ranges joined by ', '."""
    if not sectors:
        return "none"
    parts = []
    start = prev = sectors[0]
    for s in list(sectors[1:]) + [None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append("0x%X" % start if start == prev else "0x%X-0x%X" % (start, prev))
        if s is not None:
            start = prev = s
    return ", ".join(parts)


def check_write(profile, firmware_len, offset, length):
    """Refuse (LayoutError) a write of LENGTH bytes at OFFSET that is unsafe on PROFILE.

    The write erases whole sectors, so the sectors it covers are checked:
    against the flash size, the firmware image (FIRMWARE_LEN from 0x8FFC), the
    ROMFS partition, the filesystem and the SDK parameters.  The message says what is there and
    which sectors are free.
    """
    if not profile.supported:
        raise LayoutError("board profile %s is not supported: %s" % (profile.name, profile.reason))
    check_firmware_len(profile, firmware_len)
    if length <= 0:
        raise LayoutError("nothing to write (length %d)" % length)
    if offset < 0 or offset % SECTOR:
        raise LayoutError(
            "offset 0x%X is not at a sector boundary (multiple of 0x1000): writing there "
            "would erase the start of the sector" % offset
        )
    first = offset // SECTOR
    last = (offset + length - 1) // SECTOR
    where = (
        "sector 0x%X" % first if first == last else "sectors 0x%X-0x%X" % (first, last)
    )
    span = "%s (0x%X..0x%X, %d bytes)" % (where, offset, offset + length - 1, length)
    free = sector_ranges_text(free_sectors(profile, firmware_len))
    if offset + length > profile.flash_size:
        raise LayoutError(
            "%s runs past the end of the %s flash (0x%X) on %s; free sectors: %s"
            % (span, _size_text(profile.flash_size), profile.flash_size, profile.name, free)
        )
    a, b = first * SECTOR, (last + 1) * SECTOR
    for s, e, what in _occupied(profile, firmware_len):
        if a < e and s < b:
            raise LayoutError(
                "%s would overwrite %s on %s; free sectors: %s" % (span, what, profile.name, free)
            )
