# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# CPU settings for nnU-Net. nnUNet_n_proc_DA=0 = no augmentation worker processes; nnU-Net's
# planner calls torch.set_num_threads(nnUNet_n_proc_DA), which fails with 0, so `neurino demo` and the
# test fixture give nnUNetv2_plan_and_preprocess at least 1.
export nnUNet_def_n_proc ?= 2
export nnUNet_n_proc_DA ?= 0
# extra options for `neurino demo`, e.g. make demo DEMO_ARGS="--quick --force -o /tmp/demo"
DEMO_ARGS ?=

.PHONY: demo test test-gpu lint clean-venv

$(STAMP): setup.py
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neurino demo $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

# on a CUDA machine: trainer tests on CUDA, short nnUNetv2_train runs, predict, step times (benchmarks/gpu_check.sh)
test-gpu: $(STAMP)
	PY=$(VENV)/bin/python bash benchmarks/gpu_check.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check nnunetv2_neurino tests benchmarks

clean-venv:
	rm -rf $(VENV)
