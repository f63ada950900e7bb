# rigl-repro: the README's first section uses `make install`, `make demo` and `make test`.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test test-slow bench-topology

## Install: keep an installed torch (a CUDA build on a GPU machine); otherwise the CPU wheel of $(TORCH_VERSION).
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -r requirements.txt
	$(PYTHON) -m pip install --no-deps -e .

## The main job: dense, static, SET and RigL at density 0.1 on the embedded digits dataset.
demo:
	$(PYTHON) scripts/demo.py

## Fast tests (the default run, also what CI runs).
test:
	$(PYTHON) -m pytest

## Slow tests only.
test-slow:
	$(PYTHON) -m pytest -m slow

## RigL topology update vs one training step of CIFAR ResNet-50 at batch 128.
bench-topology:
	$(PYTHON) scripts/bench_topology.py
