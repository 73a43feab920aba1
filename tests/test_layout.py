"""Board profiles and the flash-write guard (host_tools/espssl/layout.py)."""

import pytest

from espssl import layout
from espssl.errors import LayoutError

# Realistic image lengths (the uint32 at 0x8FFC): a 2 MiB+ build and a 1 MiB build.
LEN_4M = 0x9A3B8
LEN_1M = 0x8E1A4
LEN_HEAD = 0xA04C0  # ESP8266_GENERIC at MicroPython's HEAD (the ROMFS variant is as long)
LEN_FROZEN = 0xA9D84  # the same with espconn frozen in (firmware/manifest.py)
ROMFS_PROFILES = ["esp8266-2m-romfs", "esp8266-4m-romfs"]


def test_profiles_listed_and_512k_hidden():
    assert {"esp8266-1m", "esp8266-2m", "esp8266-4m", "esp8266-2m-romfs", "esp8266-4m-romfs"} <= set(layout.names())
    assert "esp8266-512k" not in layout.names()
    assert "esp8266-512k" in layout.names(include_unsupported=True)


def test_1m_profile_regions():
    p = layout.load("esp8266-1m")
    assert p.flash_size == 0x100000
    assert p.firmware == (0, 0x98000)
    assert p.filesystem == (0x99000, 0xFB000)
    assert p.sdk_params == (0xFB000, 0x100000)
    assert p.sdk_params[1] - p.sdk_params[0] == 20 * 1024
    assert p.default_ca_sector == 0x98
    assert p.default_cert_sector == 0x97
    assert any("0x3B" in f for f in p.facts)


def test_4m_profile_regions():
    p = layout.load("esp8266-4m")
    assert p.flash_size == 0x400000
    assert p.firmware == (0, 0x100000)
    assert p.filesystem == (0x100000, 0x400000 - 0x5000)
    assert p.sdk_params == (0x3FB000, 0x400000)
    assert (p.default_ca_sector, p.default_cert_sector) == (0xF0, 0xF1)


@pytest.mark.parametrize("name", ["esp8266-1m", "esp8266-2m", "esp8266-4m"] + ROMFS_PROFILES)
def test_default_sectors_are_free_for_realistic_images(name):
    p = layout.load(name)
    lengths = [LEN_1M] if p.flash_size == 0x100000 else [LEN_4M, LEN_HEAD, LEN_FROZEN]
    for n in lengths:
        free = layout.free_sectors(p, n)
        assert p.default_ca_sector in free and p.default_cert_sector in free
        layout.check_write(p, n, p.default_ca_sector * 4096, 4096)
        layout.check_write(p, n, p.default_cert_sector * 4096, 2000)


@pytest.mark.parametrize("name", ROMFS_PROFILES)
def test_romfs_profiles(name):
    p = layout.load(name)
    assert p.variant == "FLASH_2M_ROMFS"
    # esp8266_2MiB_ROMFS.ld: irom0 ends at 0xB0000, ROMFS 0xB0000..0xFFFFF, filesystem from 0x100000.
    assert p.firmware == (0, 0xB0000) and p.romfs == (0xB0000, 0x100000)
    assert p.filesystem == (0x100000, p.flash_size - 0x5000)
    assert p.sdk_params == (p.flash_size - 0x5000, p.flash_size)
    assert (p.default_ca_sector, p.default_cert_sector) == (0xAE, 0xAF)
    assert layout.for_flash_size(p.flash_size, romfs=True) == p
    assert layout.for_variant("FLASH_2M_ROMFS", p.flash_size) == p
    # Every sector of the ROMFS partition is refused, naming it; the defaults are not in it.
    free = layout.free_sectors(p, LEN_HEAD)
    assert free == list(range(0xA1, 0xB0))
    for sec in range(0xB0, 0x100):
        with pytest.raises(LayoutError, match=r"ROMFS partition \(0xB0000\.\.0xFFFFF, 320 KiB\).*free sectors: 0xA1-0xAF"):
            layout.check_write(p, LEN_HEAD, sec * 4096, 4096)
    # A CA bundle spilling from 0xAF into the ROMFS is refused too.
    with pytest.raises(LayoutError, match="sectors 0xAF-0xB0.*ROMFS"):
        layout.check_write(p, LEN_HEAD, 0xAF000, 4097)
    # The plain build's sectors on the same flash: the plain profile still allows them.
    plain = layout.for_flash_size(p.flash_size)
    assert plain.romfs is None and plain.default_ca_sector == 0xF0
    layout.check_write(plain, LEN_HEAD, 0xF0000, 4096)


def test_romfs_image_length_limit():
    p = layout.load("esp8266-4m-romfs")
    layout.check_firmware_len(p, 0xB0000 - 16)
    with pytest.raises(LayoutError, match="does not fit"):
        layout.check_firmware_len(p, 0xB0000)  # a plain 2 MiB+ image too long for this variant


def test_for_variant_names_the_choices():
    assert layout.for_variant("", 0x400000).name == "esp8266-4m"
    assert layout.for_variant("FLASH_1M", 0x100000).name == "esp8266-1m"
    with pytest.raises(LayoutError, match="no board profile for variant FLASH_2M_ROMFS with 1 MiB.*esp8266-4m-romfs"):
        layout.for_variant("FLASH_2M_ROMFS", 0x100000)
    with pytest.raises(LayoutError, match="with a ROMFS partition"):
        layout.for_flash_size(0x100000, romfs=True)


def test_512k_refused_with_reason():
    with pytest.raises(LayoutError, match="no filesystem.*mpy"):
        layout.load("esp8266-512k")
    with pytest.raises(LayoutError, match="no filesystem"):
        layout.for_flash_size(0x80000)
    p = layout.load("esp8266-512k", allow_unsupported=True)
    assert p.filesystem is None and not p.supported


def test_unknown_profile():
    with pytest.raises(LayoutError, match="unknown board profile 'nope'.*esp8266-4m"):
        layout.load("nope")
    with pytest.raises(LayoutError, match="unknown board profile"):
        layout.load("../boards/esp8266-4m")


def test_for_flash_size():
    assert layout.for_flash_size(0x400000).name == "esp8266-4m"
    assert layout.for_flash_size(0x100000).name == "esp8266-1m"
    with pytest.raises(LayoutError, match="no board profile for 8 MiB"):
        layout.for_flash_size(0x800000)


def test_free_sectors_1m():
    p = layout.load("esp8266-1m")
    # Image + MD5 end at 0x8E1B4, so sector 0x8E is busy; 0x8F..0x98 are free.
    assert layout.free_sectors(p, LEN_1M) == list(range(0x8F, 0x99))
    # A full-size image leaves exactly the reserved sector 0x98.
    assert layout.free_sectors(p, 0x98000 - 16) == [0x98]


def test_free_sectors_4m():
    p = layout.load("esp8266-4m")
    assert layout.free_sectors(p, LEN_4M) == list(range(0x9B, 0x100))


def test_manual_sector_0x3b_refused_inside_firmware():
    p = layout.load("esp8266-4m")
    with pytest.raises(LayoutError) as e:
        layout.check_write(p, LEN_4M, 0x3B * 4096, 4096)
    msg = str(e.value)
    assert "sector 0x3B" in msg
    assert "MicroPython firmware image (0x0..0x9A3C7, length 0x9A3B8" in msg
    assert "free sectors: 0x9B-0xFF" in msg
    p1 = layout.load("esp8266-1m")
    with pytest.raises(LayoutError, match=r"firmware image.*free sectors: 0x8F-0x98"):
        layout.check_write(p1, LEN_1M, 0x3B000, 100)


def test_refuse_last_image_sector_and_md5():
    p = layout.load("esp8266-4m")
    # The MD5 after a 0x9AFF8-byte image reaches into sector 0x9B.
    with pytest.raises(LayoutError, match="firmware image"):
        layout.check_write(p, 0x9AFF8, 0x9B000, 4096)
    layout.check_write(p, 0x9AFF0, 0x9B000, 4096)  # image + MD5 end exactly at 0x9B000


@pytest.mark.parametrize(
    "name,offset,length,what",
    [
        ("esp8266-1m", 0x99000, 4096, "filesystem"),
        ("esp8266-1m", 0x98000, 4097, "filesystem"),  # spills into sector 0x99
        ("esp8266-1m", 0xFB000, 4096, "SDK parameters"),
        ("esp8266-1m", 0xFF000, 8192, "past the end of the 1 MiB flash"),
        ("esp8266-4m", 0x100000, 4096, "filesystem"),
        ("esp8266-4m", 0xFF000, 8192, "filesystem"),
        ("esp8266-4m", 0x3FF000, 4096, "SDK parameters"),
        ("esp8266-4m", 0x400000, 1, "past the end"),
        ("esp8266-4m", 0xF0800, 16, "not at a sector boundary"),
    ],
)
def test_refusals(name, offset, length, what):
    p = layout.load(name)
    n = LEN_1M if p.flash_size == 0x100000 else LEN_4M
    with pytest.raises(LayoutError, match=what):
        layout.check_write(p, n, offset, length)


def test_refusal_message_names_region_and_free_sectors_1m():
    p = layout.load("esp8266-1m")
    with pytest.raises(LayoutError) as e:
        layout.check_write(p, LEN_1M, 0x99000, 4096)
    assert str(e.value) == (
        "sector 0x99 (0x99000..0x99FFF, 4096 bytes) would overwrite MicroPython's "
        "filesystem (0x99000..0xFAFFF) on esp8266-1m; free sectors: 0x8F-0x98"
    )


def test_bad_firmware_length_refused():
    p = layout.load("esp8266-4m")
    with pytest.raises(LayoutError, match="no MicroPython firmware.*erased"):
        layout.check_write(p, 0xFFFFFFFF, 0xF0000, 4096)
    with pytest.raises(LayoutError, match="does not fit"):
        layout.check_write(p, 0x200000, 0xF0000, 4096)
    p1 = layout.load("esp8266-1m")
    with pytest.raises(LayoutError, match="does not fit"):
        layout.free_sectors(p1, 0x9A3B8)  # a 2 MiB+ image on a 1 MiB layout


def test_parse_firmware_len_and_ranges_text():
    assert layout.parse_firmware_len(b"\xb8\xa3\x09\x00") == 0x9A3B8
    assert layout.sector_ranges_text([1, 2, 3, 7, 9, 10]) == "0x1-0x3, 0x7, 0x9-0xA"
    assert layout.sector_ranges_text([]) == "none"
