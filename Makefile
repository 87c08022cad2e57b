# posetok: `make convert DATASET=droid` and `make test` are all a fresh machine needs.
# `setup` is idempotent: it creates .venv once (re-done when pyproject.toml changes) and installs
# the system library Open3D needs when it is missing.

PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.posetok-installed
# torch is pinned here, before anything else resolves it: 2.13.0 is a local CPU wheel on the
# project's machines; an unpinned `torch` pulls several GB of CUDA wheels.
TORCH   := torch==2.13.0

DATASET ?= droid
OUT     ?= out
SOURCE  ?=
WORKERS ?=
ARGS    ?=
PYTEST_ARGS ?=

.PHONY: setup system-libs test test-slow convert lint clean

setup: $(STAMP) system-libs

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) (first time: ~4 minutes, ~4 GB)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

# Open3D's wheel links libusb-1.0 but does not ship it.
system-libs:
	@if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then \
	  echo ">> installing libusb-1.0-0 (needed by open3d)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null \
	    || { echo "could not install libusb-1.0-0: run 'apt-get install -y libusb-1.0-0' as root" >&2; exit 1; }; \
	fi

test: setup
	$(BIN)/ruff check schemas converters pipelines model tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

convert: setup
	$(BIN)/python -m pipelines.convert --dataset $(DATASET) --out $(OUT) \
	  $(if $(SOURCE),--source $(SOURCE)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

lint: setup
	$(BIN)/ruff check schemas converters pipelines model tests

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache .hypothesis
