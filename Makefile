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
	$(FUNDIFF) train class --preset quick --out $(OUT)/mnist-class --threads $(THREADS) $(if $(wildcard $(OUT)/mnist-class/state.json),--resume,)
	$(FUNDIFF) sample --model $(OUT)/mnist-class --n 8 --steps 60 --out $(OUT)/mnist-class-samples.png --threads $(THREADS)
	$(FUNDIFF) train denoiser --preset quick --out $(OUT)/mnist-denoiser --threads $(THREADS) $(if $(wildcard $(OUT)/mnist-denoiser/state.json),--resume,)
	$(FUNDIFF) denoise-sweep --model $(OUT)/mnist-denoiser --out $(OUT)/denoise-sweep --threads $(THREADS)
	@echo "tour done: pictures in $(OUT)"

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) out
