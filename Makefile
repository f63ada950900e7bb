# rigl-repro: the README's first section uses `make install`, `make demo` and `make test`.
PYTHON ?= python3
TORCH ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST_DEB := /usr/share/datasets/fashion-mnist

.PHONY: install demo demo-seeds dynamics test test-slow bench bench-distributed bench-topology bench-threads bench-inference test-slurm gpu-wheels gpu-check gpu-rehearse \
	tables figures table1 table2 table3 table4 table5 fig1 fig2 fig3 fig4 sweep-alpha-dt sweep-lr fmnist structured examples

# The installed torch/torchvision pair as pip constraints (local labels such as +cu130 dropped, which the
# versions still match): the framework extra must not move it.
export TORCH_PAIR := import torch, torchvision; print("torch==" + torch.__version__.split("+")[0]); print("torchvision==" + torchvision.__version__.split("+")[0])

## Install: keep an installed torch and torchvision that import together (a GPU machine's own), else install
## $(TORCH); then the rest, the framework callbacks' extra (requirements-frameworks.txt) with that pair held, and
## Fashion-MNIST from Debian's package where apt-get and root are there (elsewhere torchvision downloads it at the
## first run).
install:
	@$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PYTHON) -m pip install $(TORCH)
	$(PYTHON) -m pip install -r requirements.txt
	@constraints=$$(mktemp) && $(PYTHON) -c "$$TORCH_PAIR" > $$constraints \
		&& $(PYTHON) -m pip install -r requirements-frameworks.txt -c $$constraints; status=$$?; rm -f $$constraints; exit $$status
	$(PYTHON) -m pip install --no-deps -e .
	@if [ ! -d $(FASHION_MNIST_DEB) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
		|| echo "note: apt-get could not install dataset-fashion-mnist; torchvision will download Fashion-MNIST"; fi

DEMO_DIR ?= outputs/demo

## The main job: dense, static, SET, RigL and SNFS on Fashion-MNIST (LeNet-5, density 0.05), then a table and a plot.
# The dataset options of RUN_ARGS (e.g. RUN_ARGS="dataset.root=/data") reach the data fetch as well as the runs.
FETCH_ARGS = $(filter dataset.% +dataset.%,$(RUN_ARGS))

demo:
	@$(PYTHON) scripts/fetch_data.py dataset=fashion_mnist $(FETCH_ARGS)
	$(PYTHON) main.py -m experiment=demo output_root=$(DEMO_DIR) $(RUN_ARGS)
	$(PYTHON) scripts/demo_report.py $(DEMO_DIR)
	$(PYTHON) scripts/mask_dynamics.py $(DEMO_DIR)

DEMO_SEEDS_DIR ?= outputs/demo_seeds

## The demo over seeds 0, 1 and 2 (the README's table): 15 runs, then the same table with mean +- std.
demo-seeds:
	@$(PYTHON) scripts/fetch_data.py dataset=fashion_mnist $(FETCH_ARGS)
	$(PYTHON) main.py -m experiment=demo seed=0,1,2 output_root=$(DEMO_SEEDS_DIR) $(RUN_ARGS)
	$(PYTHON) scripts/demo_report.py $(DEMO_SEEDS_DIR)

DYNAMICS_ROOT ?= $(DEMO_DIR)

## How much of the network the masks explored (docs/mask_dynamics.md): a table and DYNAMICS_ROOT/mask_dynamics.png.
dynamics:
	$(PYTHON) scripts/mask_dynamics.py $(DYNAMICS_ROOT)

## A finished run's model as one compact file, RUN_DIR/model.safetensors (docs/export.md), checked against the run's
## test accuracy: make export RUN_DIR=outputs/demo/fashion_mnist-lenet5-rigl/masking=rigl (EXPORT_ARGS: --out PATH).
## (RUN_DIR, not RUN: RUN is the experiment command below.)
.PHONY: export
export:
	@$(if $(RUN_DIR),,$(error RUN_DIR is not set; e.g. make export RUN_DIR=outputs/demo/fashion_mnist-lenet5-rigl/masking=rigl))
	$(PYTHON) scripts/export.py "$(RUN_DIR)" --check $(EXPORT_ARGS)

## Fast tests (the default run, also what CI runs): one pytest-xdist worker per core (TEST_WORKERS), each on one
## thread, so that the workers do not oversubscribe the cores (the tests that measure threads set their own).
TEST_WORKERS ?= auto
test:
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -n $(TEST_WORKERS) --dist worksteal

## Slow tests only.
test-slow:
	$(PYTHON) -m pytest -m slow

## A smoke sweep through the SLURM launcher on a single-node cluster the test starts (installs SLURM: needs root).
test-slurm:
	$(PYTHON) -m pytest -m slurm

## Throughput of dense, static and RigL training side by side (BENCH_ARGS, e.g. "model=resnet50 dataset.num_classes=100";
## "--concurrent 3" adds N RigL runs at once on the device against one after another).
bench:
	$(PYTHON) scripts/bench.py $(BENCH_ARGS)

## One RigL run trained by 1 and by N processes (BENCH_ARGS, e.g. "--processes 4 model=resnet50 dataset.num_classes=100").
bench-distributed:
	$(PYTHON) scripts/bench_distributed.py $(BENCH_ARGS)

## RigL topology update vs one training step of CIFAR ResNet-50 at batch 128.
bench-topology:
	$(PYTHON) scripts/bench_topology.py

## A one-epoch Fashion-MNIST run alone and beside busy processes: threads=auto vs 1, OpenMP threads passive vs spinning
## (BENCH_ARGS, e.g. "--busy 1 --json threads.json"; on an otherwise idle machine).
bench-threads:
	$(PYTHON) scripts/bench_threads.py $(BENCH_ARGS)

BENCH_INFERENCE_JSON ?= outputs/bench_inference.json

## Sparse inference on the CPU (docs/benchmarks.md): masked dense models vs CSR Linears, records in BENCH_INFERENCE_JSON.
bench-inference:
	$(PYTHON) scripts/bench_inference.py --json $(BENCH_INFERENCE_JSON)

# ---------------------------------------------------------------------------------------------------------------
# The GPU check (docs/benchmarks.md, "Checking a GPU machine"). The GPU machines come with Python 3.12, torch and
# torchvision, pytest, numpy, PyYAML and tqdm, and nothing can be downloaded there: what the project imports
# beyond that travels as wheels in GPU_WHEEL_DIR (ignored by git), with the Fashion-MNIST files, under 60 MiB.
# Hydra and OmegaConf (and ANTLR, an sdist built here), and Optuna with its needs: Hydra's plugin scan imports
# the project's sweepers, hence Optuna, whenever a config is composed. W&B stays behind: a run with
# logger.mode=disabled never imports it. Versions: the ones the tests pass with here.
GPU_WHEEL_DIR ?= .whl
GPU_PYVER ?= 3.12
GPU_WHEELS := hydra-core==1.3.8 omegaconf==2.3.1 optuna==5.0.0 alembic==1.20.1 sqlalchemy==2.1.9 mako==1.4.3 \
	colorlog==6.12.0
GPU_SDISTS := antlr4-python3-runtime==4.9.3
GPU_PLATFORMS := $(foreach n,2_28 2_27 2_24 2_17,--platform manylinux_$(n)_x86_64) --platform manylinux2014_x86_64

## The wheels the GPU machine lacks, for CPython $(GPU_PYVER) on x86-64 Linux, and the Fashion-MNIST files.
gpu-wheels:
	@mkdir -p $(GPU_WHEEL_DIR) && rm -rf $(GPU_WHEEL_DIR)/*.whl $(GPU_WHEEL_DIR)/fashion-mnist
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYVER) --implementation cp \
		$(GPU_PLATFORMS) -d $(GPU_WHEEL_DIR) $(GPU_WHEELS)
	$(PYTHON) -m pip wheel -q --no-deps -w $(GPU_WHEEL_DIR) $(GPU_SDISTS)
	@if [ -d $(FASHION_MNIST_DEB) ]; then mkdir -p $(GPU_WHEEL_DIR)/fashion-mnist \
		&& cp $(FASHION_MNIST_DEB)/*-ubyte.gz $(GPU_WHEEL_DIR)/fashion-mnist/; \
	else echo "note: no $(FASHION_MNIST_DEB) (make install): the real Fashion-MNIST test will be skipped there"; fi
	$(PYTHON) scripts/gpu_check.py --carry-size --wheels $(GPU_WHEEL_DIR)

## On the GPU machine (the device command in docs/benchmarks.md): results in $OUT, else outputs/gpu_check.
gpu-check:
	$(PYTHON) scripts/gpu_check.py --wheels $(GPU_WHEEL_DIR) $(GPU_CHECK_ARGS)

## The same check on this CPU, in a Python $(GPU_PYVER) virtual environment holding only what the GPU machine has
## (torch 2.11.0 and torchvision 0.26.0, as there), from a copy of what would travel: results in outputs/gpu_rehearse.
gpu-rehearse: gpu-wheels
	GPU_WHEEL_DIR=$(GPU_WHEEL_DIR) GPU_PYVER=$(GPU_PYVER) bash scripts/gpu_rehearse.sh outputs/gpu_rehearse

# ---------------------------------------------------------------------------------------------------------------
# The report's tables and figures. SCALE=paper (the report's settings) | smoke (embedded dataset, minutes on a
# CPU); LAUNCHER=local (one run after another) | parallel (JOBS runs at once on this machine and its GPU,
# conf/hydra/launcher/parallel.yaml) | slurm (conf/hydra/launcher/slurm.yaml; set the partition etc. there or on
# the command line as hydra.launcher.partition=...). Runs that already exist are
# reused, so a target whose runs are done only rebuilds its output (in outputs/report/$(SCALE)). A run that fails
# is reported (make prints "Error ... (ignored)") and its cell is shown as missing; the other runs still run.
SCALE ?= paper
LAUNCHER ?= local
JOBS ?= 3
LAUNCH_local :=
LAUNCH_parallel := hydra/launcher=parallel hydra.launcher.n_jobs=$(JOBS)
LAUNCH_slurm := hydra/launcher=slurm
RUN = $(PYTHON) main.py -m scale=$(SCALE) $(LAUNCH_$(LAUNCHER)) $(RUN_ARGS)
REPORT = $(PYTHON) scripts/report.py --scale $(SCALE)
# At paper scale a target first puts its datasets in place (once, here, not once per run and node): without them
# it stops with fetch_data's one line instead of launching every run to fail alike.
FETCH = $(if $(filter paper,$(SCALE)),$(foreach dataset,$(1),$(PYTHON) scripts/fetch_data.py dataset=$(dataset) $(FETCH_ARGS) &&) true)
ifeq ($(filter $(SCALE),paper smoke),)
$(error SCALE=$(SCALE) is not known; use SCALE=paper or SCALE=smoke)
endif
ifeq ($(filter $(LAUNCHER),local parallel slurm),)
$(error LAUNCHER=$(LAUNCHER) is not known; use LAUNCHER=local, parallel or slurm)
endif
ifeq ($(shell [ "$(JOBS)" -ge 1 ] 2>/dev/null && echo ok),)
$(error JOBS=$(JOBS) is invalid; expected the number of runs at once, an integer >= 1)
endif

tables: table1 table2 table3 table4 table5
figures: fig1 fig2 fig3 fig4

table1:
	@$(call FETCH,cifar10)
	-$(RUN) experiment=table1_dense
	-$(RUN) experiment=table1
	$(REPORT) table1

table2:
	@$(call FETCH,cifar10)
	-$(RUN) experiment=table2_dense
	-$(RUN) experiment=table2
	-$(RUN) experiment=table2_lottery
	$(REPORT) table2

table3:
	@$(call FETCH,cifar100)
	-$(RUN) experiment=table3_dense
	-$(RUN) experiment=table3
	-$(RUN) experiment=table3_lottery
	$(REPORT) table3

table4: sweep-alpha-dt
	-$(RUN) experiment=table4_reference
	$(REPORT) table4 contours

table5:
	@$(call FETCH,cifar10 cifar100)
	-$(RUN) experiment=table5_cifar10
	-$(RUN) experiment=table5_cifar100
	-$(RUN) experiment=table5_reinit_cifar10
	-$(RUN) experiment=table5_reinit_cifar100
	$(REPORT) table5

## Optuna TPE over (alpha, delta_t) for Random and ERK at densities 0.1, 0.2, 0.5 (studies in outputs/$(SCALE)/optuna.db).
sweep-alpha-dt:
	@$(call FETCH,cifar10)
	-for variant in rigl rigl_erk; do for density in 0.1 0.2 0.5; do \
		$(RUN) experiment=sweep_alpha_dt variant=$$variant masking.density=$$density; done; done

## Figure 2's learning-rate x (alpha, delta_t) grid.
sweep-lr:
	@$(call FETCH,cifar10)
	-$(RUN) experiment=sweep_lr

fig1:
	@$(call FETCH,cifar10)
	-$(RUN) experiment=table2_dense
	-$(RUN) experiment=fig1
	$(REPORT) fig1

fig2: sweep-lr
	$(REPORT) fig2

fig3:
	@$(call FETCH,cifar10 cifar100)
	-$(RUN) experiment=table2
	-$(RUN) experiment=table3
	$(REPORT) fig3

fig4:
	@$(call FETCH,cifar10)
	-$(RUN) experiment=table5_cifar10
	$(REPORT) fig4

## The engine on models of one's own: an MLP and a small ViT on Fashion-MNIST, dense, static, SET and RigL at
## density 0.1 (ERK), 3 seeds, through the plain-PyTorch API (examples/); 24 runs, about 30 minutes on one thread;
## writes docs/examples.md (records in outputs/examples/, reused by a second call).
examples:
	OMP_NUM_THREADS=1 $(PYTHON) scripts/examples_table.py

## Beyond the report: what mask structure costs (docs/structured.md). Static, SET and RigL on LeNet-5 and
## Fashion-MNIST, unstructured against constant fan-in at density 0.1 and against 2:4 at 0.5, and SRigL at 0.1,
## 3 seeds; a table and a figure in outputs/report/<scale>/.
STRUCTURED_ROOT = outputs/$(SCALE)/structured
structured:
	@$(call FETCH,fashion_mnist)
	-$(RUN) experiment=structured output_root=$(STRUCTURED_ROOT)
	-$(RUN) experiment=structured_nm output_root=$(STRUCTURED_ROOT)
	-$(RUN) experiment=structured_srigl output_root=$(STRUCTURED_ROOT)
	$(PYTHON) scripts/structured_report.py $(STRUCTURED_ROOT) --out-dir outputs/report/$(SCALE)

## Beyond the report: LeNet-5 on Fashion-MNIST, 9 methods x 3 densities x 3 seeds and dense; a table and a figure.
fmnist:
	@$(call FETCH,fashion_mnist)
	-$(RUN) experiment=fmnist_dense
	-$(RUN) experiment=fmnist
	$(REPORT) fmnist fig_fmnist
