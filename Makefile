# The few commands a user types.  `make demo` and `make test` work on a fresh
# clone with nothing but Python 3.11: both set the environment up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUBS  := typings

.PHONY: setup demo test typecheck bench clean

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

test: setup typecheck
	$(BIN)/pytest

demo: setup
	$(BIN)/espssl certs --out out/demo --ip 127.0.0.1 --force
	$(BIN)/espssl ca-bin build --out out/demo/esp_ca_cert.bin --force out/demo/ca.der
	$(BIN)/espssl ca-bin inspect out/demo/esp_ca_cert.bin

bench: setup
	$(BIN)/python tools/bench_espconn.py

clean:
	rm -rf out build *.egg-info .pytest_cache .mypy_cache
