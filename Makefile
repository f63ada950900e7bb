# rigl-repro: the README's first section uses `make install`, `make demo` and `make test`.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test test-slow bench-topology

## Install: keep an installed torch (a CUDA build on a GPU machine); otherwise the CPU wheel of $(TORCH_VERSION).
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -r requirements.txt
	$(PYTHON) -m pip install --no-deps -e .

DEMO_DIR ?= outputs/demo

## The main job: dense, static, SET and RigL at density 0.1 on the embedded digits dataset, then a table and a plot.
demo:
	$(PYTHON) main.py -m dataset=digits masking=dense,static,set,rigl masking.density=0.1 masking.delta_t=20 \
		output_root=$(DEMO_DIR)
	$(PYTHON) scripts/demo_report.py $(DEMO_DIR)

## Fast tests (the default run, also what CI runs).
test:
	$(PYTHON) -m pytest

## Slow tests only.
test-slow:
	$(PYTHON) -m pytest -m slow

## RigL topology update vs one training step of CIFAR ResNet-50 at batch 128.
bench-topology:
	$(PYTHON) scripts/bench_topology.py
