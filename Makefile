# fundiff: `make tour` runs the main job, `make test` runs the tests. Each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FUNDIFF := $(VENV)/bin/fundiff
THREADS ?= $(shell nproc)
OUT ?= out/tour

.PHONY: tour test setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch>=2.10" "torchvision>=0.25"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

tour: setup
	$(FUNDIFF) data fetch mnist
	$(FUNDIFF) tour --out $(OUT) --threads $(THREADS)
	@echo "open $(OUT)/index.html"

test: setup
	@# the report's browser test drives Debian's chromium with Playwright (never a browser download); as root only
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1) || true
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) out
