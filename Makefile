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
	@# the browser tests drive Debian's chromium with Playwright (never a browser download); installed here as root.
	@# FUNDIFF_REQUIRE_BROWSER=1 makes them fail, with the reason, where it is still missing (plain pytest skips).
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make test: chromium is missing and this is not root, so it is not installed here; the browser tests will fail (as root: apt-get install -y chromium)" >&2; \
	  elif ! command -v apt-get >/dev/null; then \
	    echo "make test: chromium is missing and there is no apt-get to install it; the browser tests will fail" >&2; \
	  elif ! log=$$( { apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } 2>&1 ); then \
	    echo "make test: apt-get install chromium failed, so the browser tests will fail; apt-get said:" >&2; \
	    printf '%s\n' "$$log" | tail -n 20 >&2; \
	  fi; }
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@# one pytest worker per core (pytest-xdist), a module per worker at a time, in the order tests/conftest.py sets
	@# (modules with slow tests first, so both cores finish together); each test runs torch on one thread
	FUNDIFF_REQUIRE_BROWSER=1 $(PY) -m pytest -q -n $(THREADS) --dist loadscope --no-loadscope-reorder

clean:
	rm -rf $(VENV) out
