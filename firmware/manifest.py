# Freezes the espconn package into a custom MicroPython firmware for 2 MiB+ boards
# (ESP8266_GENERIC, also its FLASH_2M_ROMFS variant), as micropython-lib packages do:
#
#   make -C ports/esp8266 BOARD=ESP8266_GENERIC FROZEN_MANIFEST=/path/to/espssl/firmware/manifest.py
#
# Frozen bytecode runs from flash, so the package's code costs almost no RAM (see the
# README, "RAM on a real ESP8266"); it adds ~39 KB to irom0 (a 2 MiB image grows from
# about 0xA04C0 to 0xA9D84 bytes and still fits).  FROZEN_MANIFEST replaces the board's
# own manifest, so include that first: the 2 MiB+ build's is manifest_2MiB.py, which
# includes the port's base ($(PORT_DIR)/boards/manifest.py: _boot, flashbdev,
# inisetup, the networking bundle) and adds asyncio and a few micropython-lib
# packages.  1 MiB boards: use manifest_1MiB.py next to this file.
include("$(BOARD_DIR)/manifest_2MiB.py")

# base_path is relative to this file: firmware/espconn/ becomes the package `espconn`.
# opt=3 as `espssl deploy` compiles it (no line numbers: less flash).
package("espconn", base_path=".", opt=3)
