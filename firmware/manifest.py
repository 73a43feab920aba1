# Freezes the espconn package into a custom MicroPython firmware build (micropython-lib style).
#
#   make -C ports/esp8266 BOARD=ESP8266_GENERIC FROZEN_MANIFEST=/path/to/espssl/firmware/manifest.py
#
# Frozen bytecode runs from flash: the package's code then costs almost no RAM,
# which is what lets a CA-verified connection fit the ESP8266's heap (see the
# README, "RAM on a real ESP8266").  FROZEN_MANIFEST replaces the board's own
# manifest, so include it first: it freezes _boot, inisetup, flashbdev (and
# asyncio on 2M+ builds), without which the board does not start properly.
include("$(BOARD_DIR)/manifest.py")

# base_path is relative to this file: firmware/espconn/ becomes the package `espconn`.
package("espconn", base_path=".")
