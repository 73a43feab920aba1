# The few commands a user types.  `make demo` and `make test` work on a fresh
# clone with nothing but Python 3.11: both set the environment up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUBS  := typings

.PHONY: setup demo hil test typecheck bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -rf $(STUBS) && $(BIN)/python -m pip install -q --target $(STUBS) 'micropython-esp8266-stubs>=1.29,<1.30'
	touch $@

# Device code may use only what the ESP8266 port has: type-check it against the
# port's own stubs (stdlib included), not CPython's typeshed.
typecheck: setup
	MYPYPATH=$(STUBS) $(BIN)/mypy --custom-typeshed-dir $(STUBS) --no-site-packages \
	    --ignore-missing-imports --check-untyped-defs firmware/espconn

# Everything CI proves: device code against the ESP8266 stubs, the whole user
# flow on a virtual board (make demo), then every test.
test: setup typecheck
	$(MAKE) --no-print-directory demo
	$(BIN)/pytest

# The user's day in one go, on a virtual board (default) or a real one:
#   make demo                                   a fresh virtual board (FLASH_2M_ROMFS), started and stopped here
#   make demo PORT=/dev/ttyUSB0 HOST=192.168.1.23 SSID=mynet PASSWORD=secret
# HOST is this machine's LAN address (the board connects to it); SSID/PASSWORD
# reach the board through the environment only and are never printed.
# The virtual board gets an ESP8266's headroom: the default heap calibrated on
# the 64-bit port (56K, README "Virtual board"); the whole suite passes there
# (and at 54K; at 52K its CA-verified echoes end in a clean no_memory), as it
# does on the 32-bit axTLS build at an ESP8266's 38K.  VBOARD_HEAP=SIZE sets another.
PORT        ?=
HOST        ?=
DEMO        := out/demo
VBOARD_DIR  ?= $(DEMO)/vboard
VBOARD_HEAP ?=

demo: setup
	@set -e; \
	if [ -z "$(PORT)" ]; then \
	  $(BIN)/espssl vboard stop --dir $(VBOARD_DIR) >/dev/null; \
	  rm -f $(VBOARD_DIR)/flash.bin; \
	  port=$$($(BIN)/espssl vboard start --dir $(VBOARD_DIR) --flash 4M --variant FLASH_2M_ROMFS $(if $(VBOARD_HEAP),--heap $(VBOARD_HEAP))); \
	  trap '$(BIN)/espssl vboard stop --dir $(VBOARD_DIR)' EXIT; \
	  host=127.0.0.1; wifi=; \
	  echo "== virtual board on $$port"; \
	else \
	  port="$(PORT)"; host="$(HOST)"; \
	  if [ -z "$$host" ]; then echo "make demo PORT=...: also give HOST=<this machine's LAN address> (see README)" >&2; exit 2; fi; \
	  if [ -n "$$SSID" ]; then wifi=--wifi-from-env; else wifi=; fi; \
	fi; \
	echo "== certificates for $$host"; \
	$(BIN)/espssl certs --out $(DEMO) --ip $$host --force; \
	$(BIN)/espssl ca-bin build --out $(DEMO)/esp_ca_cert.bin --force $(DEMO)/ca.der; \
	$(BIN)/espssl ca-bin inspect $(DEMO)/esp_ca_cert.bin; \
	echo "== flash the CA bundle at the profile's default sector (esptool)"; \
	$(BIN)/espssl flash-ca --port $$port --backup-dir $(DEMO)/backups $(DEMO)/esp_ca_cert.bin | tee $(DEMO)/flash-ca.log; \
	ca=$$(sed -n 's/.*default CA sector \(0x[0-9A-F]*\).*/\1/p' $(DEMO)/flash-ca.log); \
	if [ -z "$(PORT)" ]; then \
	  echo "== deploy espconn as .mpy to /lib, to compare (its bytecode is copied into the heap)"; \
	  $(BIN)/espssl deploy --port $$port --target lib --backup-dir $(DEMO)/backups; \
	fi; \
	echo "== deploy espconn (mpy-cross + mpremote: into ROMFS when the firmware has one)"; \
	$(BIN)/espssl deploy --port $$port --examples --backup-dir $(DEMO)/backups $$wifi; \
	echo "== loopback suite"; \
	$(BIN)/espssl test --port $$port --host $$host --certs $(DEMO) --no-deploy \
	    --backup-dir $(DEMO)/backups --junit $(DEMO)/junit.xml --logs $(DEMO)/logs; \
	echo "== what next"; \
	if [ -z "$(PORT)" ]; then \
	  $(BIN)/espssl vboard stop --dir $(VBOARD_DIR); trap - EXIT; \
	  echo "The board keeps its flash (CA bundle at sector $$ca, espconn in its ROMFS at /rom) in $(VBOARD_DIR)/flash.bin."; \
	  echo "Start it again with espconn on it, then open its REPL:"; \
	  echo "  export ESPSSL_VBOARD_DIR=$(VBOARD_DIR)   # espssl commands find the board without --port"; \
	  echo "  port=\$$($(BIN)/espssl vboard start$(if $(VBOARD_HEAP), --heap $(VBOARD_HEAP)))"; \
	  echo "  $(BIN)/mpremote connect \$$port repl"; \
	else \
	  echo "At the board's REPL: $(BIN)/mpremote connect $$port repl"; \
	fi; \
	echo "  >>> from espconn import *        # the SDK's espconn_secure_* API (README, 'On the device')"; \
	echo "  >>> espconn_secure_ca_enable(ESPCONN_CLIENT, $$ca)   # the CA sector flash-ca printed above"; \
	echo "  >>> import ssl_demo; ssl_demo.user_init()   # finds that sector by itself"; \
	echo "      (with a TLS peer on port 8443 first: README, 'TLS peers for an axTLS board')"; \
	echo "  then: $(BIN)/espssl vboard stop (virtual board), Ctrl-] leaves mpremote"

# The loopback suite alone: PORT=... for a real board (HOST=its LAN peer address).
hil: setup
	$(BIN)/espssl test $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

# bench_ram: heap each TLS flow needs; on the project's 64-bit port by default, or
#   make bench MICROPYTHON=/path/to/micropython [FROZEN_MICROPYTHON=/path/with/espconn/frozen]
bench: setup
	$(BIN)/python tools/bench_espconn.py
	$(BIN)/python tools/bench_heap.py
	$(BIN)/python tools/bench_verify.py
	$(BIN)/python tools/bench_deploy.py $(if $(MICROPYTHON),--micropython $(MICROPYTHON))
	$(BIN)/python tools/bench_ram.py $(if $(MICROPYTHON),--micropython $(MICROPYTHON)) \
	    $(if $(FROZEN_MICROPYTHON),--frozen-micropython $(FROZEN_MICROPYTHON))

clean:
	rm -rf out build *.egg-info .pytest_cache .mypy_cache
