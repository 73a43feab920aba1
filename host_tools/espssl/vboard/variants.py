"""The MicroPython ESP8266_GENERIC builds a virtual board can be, by their variant names.

A variant fixes what the firmware makes of the flash (ports/esp8266/boards/):
which flash sizes it runs on and whether it has a ROMFS partition, a region
of flash memory-mapped by the chip, which ``vfs.rom_ioctl`` exposes and the
port mounts at ``/rom``.  The board profile (boards/*.json: firmware,
filesystem, SDK parameters) still comes from the flash size.
"""

from dataclasses import dataclass

from .. import layout
from ..errors import EspsslError


@dataclass(frozen=True)
class Variant:
    name: str
    title: str
    flash: tuple  # flash sizes it runs on ("1M", "2M", "4M"), the default first
    reason: str = ""  # why a board cannot be this variant ("" if it can)

    def romfs(self, flash_size):
        """(start, end) of this build's ROMFS partition, or None, from its board profile (boards/*.json)."""
        return layout.for_variant("" if self.name == GENERIC else self.name, flash_size).romfs


GENERIC = "GENERIC"
VARIANTS = {
    v.name: v
    for v in (
        Variant(GENERIC, "ESP8266_GENERIC, the plain 2 MiB+ build", ("4M", "2M")),
        # Its ROMFS partition (flash 0xB0000..0xFFFFF) is stated once, in boards/esp8266-*-romfs.json.
        Variant("FLASH_2M_ROMFS", "ESP8266_GENERIC-FLASH_2M_ROMFS, 2 MiB+ with a 320 KiB ROMFS",
                ("4M", "2M")),
        Variant("FLASH_1M", "ESP8266_GENERIC-FLASH_1M, for 1 MiB boards", ("1M",)),
        Variant("FLASH_512K", "ESP8266_GENERIC-FLASH_512K", ("512K",),
                reason="the 512 KiB build has no filesystem and no .mpy loader, so espconn cannot "
                "run on it; use a board with 1 MiB or more (--variant FLASH_1M)"),
    )
}


def resolve(name, flash, image_flash=None):
    """(Variant, flash size text) for --variant NAME and --flash FLASH (either may be None).

    IMAGE_FLASH is the size text of an existing image, if any; EspsslError if
    the combination is not a build MicroPython makes.
    """
    if name is None:
        size = flash or image_flash
        name = "FLASH_1M" if size == "1M" else GENERIC
    v = VARIANTS.get(name.upper())
    if v is None:
        raise EspsslError("--variant %s: unknown; MicroPython's ESP8266_GENERIC variants: %s"
                          % (name, ", ".join(VARIANTS)))
    if v.reason:
        raise EspsslError("--variant %s is not supported: %s" % (v.name, v.reason))
    size = flash or image_flash or v.flash[0]
    if size not in v.flash:
        raise EspsslError("--variant %s runs on %s flash, not %s" % (v.name, " or ".join(v.flash), size))
    return v, size
