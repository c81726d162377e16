# The two commands of a fresh machine: `make demo` and `make test`. Both build .venv from the
# lock (uv.lock) first; uv itself is installed from PyPI when it is missing.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
ORDERS ?= 1000
DEMO_DB ?= sqlite:///demo.db

.PHONY: demo test test-fast venv lint clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==0.13.9

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	touch $@

venv: $(VENV)/.synced

demo: venv
	rm -f demo.db demo.db-wal demo.db-shm
	$(VENV)/bin/splitledger demo --database $(DEMO_DB) --orders $(ORDERS)

test: venv
	bash scripts/ensure-services.sh
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

test-fast: venv
	$(VENV)/bin/python -m pytest -q -x -m "not postgres and not slow"

lint: venv
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) .tools .pytest_cache .hypothesis demo.db*
