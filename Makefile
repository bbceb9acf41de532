# The two commands of the README, plus the pieces they are made of.
#   make run    set up and start the sample game server on http://localhost:8000/
#   make test   set up and run the whole test suite (what .ci/run runs, with CI=true)

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test setup system-deps node-deps schemas check-schemas bench clean

# setup.py builds the C extension engine/_speedups.c in place (optional: without a compiler
# the pure-Python paths run); editing the C source rebuilds it.
$(BIN)/tickwire: pyproject.toml constraints.txt setup.py engine/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

setup: $(BIN)/tickwire

run: setup
	$(BIN)/tickwire run sample_game.app:app --port $(PORT)

# Debian packages the tests drive for real: Chromium, flatc, Node.js; and a C compiler
# with Python's headers, for the C extension (tests/test_speedups.py).
system-deps:
	@missing=""; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v flatc >/dev/null || missing="$$missing flatbuffers-compiler"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

node-deps:
	@if [ -f tests/package.json ]; then cd tests && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; fi

test: system-deps setup node-deps
	$(BIN)/python -m pytest -q

schemas: setup
	$(BIN)/tickwire schema compile schemas/protocol.fbs schemas/cluster.fbs --out engine/_generated --lang py
	$(BIN)/tickwire schema compile schemas/protocol.fbs --out codecs/js/generated --lang js

check-schemas: setup
	$(BIN)/tickwire schema compile schemas/protocol.fbs schemas/cluster.fbs --out engine/_generated --lang py --check
	$(BIN)/tickwire schema compile schemas/protocol.fbs --out codecs/js/generated --lang js --check

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks tests/node_modules
