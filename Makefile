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
	@[ -d /usr/share/datasets/fashion-mnist ] || [ "$$(id -u)" != 0 ] || (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1) || true
	$(FUNDIFF) data fetch fashion-mnist
	FUNDIFF=$(FUNDIFF) bash scripts/showcase.sh $(OUT)/showcase $(THREADS)
	$(FUNDIFF) sample --model mnist-class --n 8 --steps 30 --out $(OUT)/mnist-class-samples.png --threads $(THREADS)
	$(FUNDIFF) denoise-sweep --model mnist-denoiser --out $(OUT)/denoise-sweep --threads $(THREADS)
	$(FUNDIFF) train class --preset quick --out $(OUT)/my-mnist-class --threads $(THREADS) $(if $(wildcard $(OUT)/my-mnist-class/state.json),--resume,)
	$(FUNDIFF) sample --model $(OUT)/my-mnist-class --n 8 --steps 30 --out $(OUT)/my-mnist-class-samples.png --threads $(THREADS)
	@echo "tour done: pictures in $(OUT)"

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) out
