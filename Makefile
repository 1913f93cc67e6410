# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

export nnUNet_def_n_proc ?= 2
export nnUNet_n_proc_DA ?= 0

.PHONY: demo test lint clean-venv

$(STAMP): setup.py
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neurino demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check nnunetv2_neurino dataset_conversion tests benchmarks

clean-venv:
	rm -rf $(VENV)
