# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
S3_PORT ?=
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml say `python`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: setup serve-venv demo test lint format params s3 s3-stop app serve browser container-tools image-test lock clean help

help:
	@echo "make demo   set up and run the whole pipeline on the embedded demo data (offline)"
	@echo "make test   set up, lint and run all tests"
	@echo "make lint   ruff (lint + format check) and mypy; make format rewrites the files"
	@echo "make params regenerate params.yaml from conf/ (after editing conf/)"
	@echo "make s3     start the local S3 server (SeaweedFS on 127.0.0.1), create buckets, configure the DVC remote"
	@echo "make s3-stop  stop it"
	@echo "make serve  serve the published model (else models/): page, JSON API (/docs), metrics on http://127.0.0.1:7860"
	@echo "make app    the same (old name)"
	@echo "make image-test  build the server image (ONNX, no torch) with podman, run the Kubernetes manifest (podman kube play), post a photo, promote"
	@echo "make serve-venv  the serving install alone (requirements/serve.txt: posevit[serve], no torch) in .venv-serve"
	@echo "make lock   re-resolve requirements/*.txt from pyproject.toml's extras (needs uv)"

PIP_QUIET := --quiet --disable-pip-version-check
# The venv is rebuilt from the lock whenever the lock or pyproject changes: the locked stack first, then the
# project with the extras that lock was made from (pip checks they are all there at the locked versions).
$(VENV)/.installed: pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) -r requirements/lock.txt
	$(BIN)/python -m pip install $(PIP_QUIET) -c requirements/lock.txt -e ".[pipeline,dev]"
	touch $@

setup: $(VENV)/.installed

# The serving install alone, as a user's `pip install posevit[serve]` or the image has it (no torch, no DVC);
# the slim-install tests run `posevit serve` and `posevit predict` from it. Built once, rebuilt when its lock changes.
SERVE_VENV ?= .venv-serve
$(SERVE_VENV)/.installed: pyproject.toml requirements/serve.txt
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install $(PIP_QUIET) -r requirements/serve.txt
	$(SERVE_VENV)/bin/python -m pip install $(PIP_QUIET) -c requirements/serve.txt -e ".[serve]"
	touch $@

serve-venv: $(SERVE_VENV)/.installed

params: setup
	python -m posevit.core.config

# The local S3 server: data in .s3/ (ignored); a second `make s3` only checks it and its config.
s3: setup
	python -m posevit.devtools.local_s3 start $(if $(S3_PORT),--port $(S3_PORT))

s3-stop: setup
	python -m posevit.devtools.local_s3 stop

# The whole pipeline, publishing to the local S3, then every output versioned to the DVC remote.
demo: setup s3
	source .s3/env && dvc repro
	dvc push
	dvc metrics show metrics/train.json metrics/test.json
	dvc metrics show metrics/push.json

# The browser tests drive Debian's Chromium through Playwright (Playwright's own download is not used).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

browser: $(CHROMIUM)

# No Docker engine here: Debian's podman + runc build and run the Dockerfile as root; mmdebstrap makes the base.
container-tools:
	command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq podman runc mmdebstrap; }

image-test: setup container-tools
	python -m posevit.devtools.image_test

# gradio writes .pyi stubs next to modules that subclass its components (ignored by git);
# they would shadow the real source for mypy, so they go before each check.
lint: setup
	ruff check .
	ruff format --check .
	find src -name '*.pyi' -delete
	mypy
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

format: setup
	ruff check --fix .
	ruff format .

# One pytest worker a core, whole files each (module fixtures are built once); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
test: setup serve-venv browser lint
	python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

# The server (page + API); SERVE_ARGS="--model registry:<version>" (or s3://bucket/prefix/name@<version>,
# dvc:<rev>, a bundle folder, --max-batch-size 32, ...) changes it; `posevit serve --help` lists every setting.
SERVE_ARGS ?= $(APP_ARGS)
serve: setup s3
	source .s3/env && posevit serve $(SERVE_ARGS)

app: serve

# The three locks, one per install (pyproject's extras), at one set of versions: uv keeps what each file already
# pins (--upgrade-package NAME moves one); the smaller ones are constrained to the full lock.
UV_COMPILE = uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--annotation-style line
lock:
	# Everything `make setup` installs: the pipeline and the tools (torch pinned in pins.txt).
	$(UV_COMPILE) --extra pipeline --extra dev -c requirements/pins.txt -o requirements/lock.txt
	# posevit[serve]: the default image and the slim install (ONNX Runtime, the page, the API; no torch).
	$(UV_COMPILE) --extra serve -c requirements/lock.txt -o requirements/serve.txt
	# posevit[serve,torch]: serving with the torch backend (the Dockerfile's REQUIREMENTS build arg).
	$(UV_COMPILE) --extra serve --extra torch -c requirements/lock.txt -o requirements/runtime.txt

clean:
	rm -rf $(VENV) $(SERVE_VENV) .pytest_cache
