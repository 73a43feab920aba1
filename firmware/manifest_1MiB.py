# Freezes espconn into MicroPython for 1 MiB boards (ESP8266_GENERIC FLASH_1M, e.g. ESP-01S).
#
# The FLASH_1M build's irom0 holds 0x8F000 bytes; espconn adds ~39 KB, which overflows it
# by ~36 KB unless btree, espnow and the networking bundle are dropped:
#
#   make -C ports/esp8266 BOARD=ESP8266_GENERIC BOARD_VARIANT=FLASH_1M \
#       MICROPY_PY_BTREE=0 MICROPY_PY_ESPNOW=0 \
#       FROZEN_MANIFEST=/path/to/espssl/firmware/manifest_1MiB.py
#
# So instead of the port's base manifest ($(PORT_DIR)/boards/manifest.py) this freezes
# what the board needs to start (_boot, flashbdev, inisetup: $(PORT_DIR)/modules) and
# its small drivers, without require("bundle-networking") (mip, ntptime, requests, ...).
freeze("$(PORT_DIR)/modules")
require("dht")
require("ds18x20")
require("neopixel")
require("onewire")

package("espconn", base_path=".", opt=3)  # as espssl deploy compiles it
