# Oficina: `make run` starts everything, `make test` runs the whole suite. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := /var/tmp/.oficina-system-deps-1
DEBIAN_PACKAGES := chromium postgresql-client poppler-utils fonts-dejavu-core libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0

.PHONY: run test install system-deps lint lock bench clean

install: system-deps $(STAMP)

system-deps: $(SYSTEM_STAMP)

$(SYSTEM_STAMP):
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "uv>=0.5,<0.14"
	$(BIN)/uv pip install --python $(BIN)/python -q -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e .
	@touch $@

lock:
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 -q -o requirements.lock

run: install
	$(BIN)/oficina run

test: install
	$(BIN)/ruff check engine dashboard jobs tests bench panel_serve.py
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/drafts.py
	$(BIN)/python bench/downloads.py
	$(BIN)/python bench/imports.py

lint: install
	$(BIN)/ruff check engine dashboard jobs tests bench panel_serve.py

clean:
	rm -rf $(VENV) var
