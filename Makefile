# Fresh machine -> working eossl: only Python (>= 3.11) and pip are needed; uv is installed if missing.
UV ?= $(shell command -v uv 2>/dev/null)
ifeq ($(strip $(UV)),)
UV := python3 -m uv
endif
PYTEST_ARGS ?=

.PHONY: ensure-uv install demo demo-quick test lint bench

ensure-uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

install: ensure-uv
	$(UV) sync --frozen --all-extras --compile-bytecode

demo: install
	$(UV) run --frozen eossl demo

demo-quick: install
	$(UV) run --frozen eossl demo --quick --out runs/demo-quick

test: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(UV) run --frozen ruff check .

bench: install
	$(UV) run --frozen eossl bench
