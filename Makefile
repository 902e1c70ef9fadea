# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml say `python`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: setup demo test params lock clean help

help:
	@echo "make demo   set up and run the whole pipeline on the embedded demo data (offline)"
	@echo "make test   set up and run all tests"
	@echo "make params regenerate params.yaml from conf/ (after editing conf/)"
	@echo "make lock   re-resolve requirements/lock.txt from pyproject.toml (needs uv)"

# The venv is rebuilt from the lock whenever the lock or pyproject changes.
$(VENV)/.installed: pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(VENV)/.installed

params: setup
	python -m posevit.config

demo: setup
	dvc repro
	dvc metrics show

test: setup
	python -m pytest

lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		-c requirements/pins.txt -o requirements/lock.txt --annotation-style line

clean:
	rm -rf $(VENV) .pytest_cache
