# Entry points of mmdet_conddetr. Every target uses the project venv (.venv),
# creating it on first use, so `make test` works from a fresh clone.
#
#   make install        venv + pinned runtime dependencies + this package (editable)
#   make install-tests  install + test extras (pytest, transformers, onnx)
#   make test           run the test suite
#   make demo           run tools/run_demo.sh
#   make bench          run tools/analysis_tools/benchmark.py -> work_dirs/bench.json
#   make clean          remove build artefacts and install stamps (keeps .venv)
#
# Installs are idempotent: each step leaves a stamp in .stamps/ whose name
# carries a hash of the content of the files the step reads (not their
# timestamps), so a second run returns at once and editing a requirements file
# re-runs only the steps that read it (and those after them). A new .venv
# (its pyvenv.cfg is newer than the stamps) re-runs everything.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps
# pyvenv.cfg is a real file written when the venv is made; bin/python is a
# symlink whose timestamp is the interpreter's, useless to make.
VENV_MARKER := $(VENV)/pyvenv.cfg

REQ := requirements
CONSTRAINTS := -c $(REQ)/constraints.txt
BUILD_REQS := "setuptools>=77.0.3,<82" wheel ninja
TORCH_PIN := torch==2.13.0
MMCV_PIN := mmcv==2.1.0

# Prebuilt mmcv (with compiled ops) shared between checkouts on this machine.
# Add it to pip's find-links while keeping the ones already configured: append
# to PIP_FIND_LINKS when it is set (it replaces the pip.conf value), otherwise
# pass --find-links, which pip adds to the pip.conf value.
SHARED_WHEELS ?= $(abspath ../shared/wheels)
FIND_LINKS_OPT :=
ifneq ($(wildcard $(SHARED_WHEELS)),)
ifneq ($(strip $(PIP_FIND_LINKS)),)
export PIP_FIND_LINKS := $(PIP_FIND_LINKS) $(SHARED_WHEELS)
else
FIND_LINKS_OPT := --find-links $(SHARED_WHEELS)
endif
endif
PIP_INSTALL := $(PIP) install $(FIND_LINKS_OPT) $(CONSTRAINTS)

hash = $(shell cat $(1) 2>/dev/null | sha256sum | cut -c1-12)

DEPS_FILES := $(REQ)/pinned.txt $(REQ)/constraints.txt $(REQ)/runtime.txt
TESTS_FILES := $(REQ)/pinned-tests.txt $(REQ)/tests.txt $(REQ)/constraints.txt
PKG_FILES := setup.py mmdet_conddetr/version.py $(REQ)/runtime.txt \
	$(REQ)/tests.txt $(REQ)/analysis.txt $(REQ)/deploy.txt

DEPS_STAMP := $(STAMPS)/deps-$(call hash,$(DEPS_FILES))
TESTS_STAMP := $(STAMPS)/tests-$(call hash,$(TESTS_FILES))
PKG_STAMP := $(STAMPS)/package-$(call hash,$(PKG_FILES))

# One pip at a time, even under make -j.
.NOTPARALLEL:

.PHONY: help install install-tests test demo bench clean

help:
	@sed -n '3,10p' Makefile | sed 's/^# \{0,1\}//'

install: $(DEPS_STAMP) $(PKG_STAMP)

install-tests: install $(TESTS_STAMP)

$(VENV_MARKER):
	@echo ">>> creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): $(VENV_MARKER)
	@mkdir -p $(STAMPS)
	@echo ">>> build tools"
	$(PIP_INSTALL) $(BUILD_REQS)
	@echo ">>> $(TORCH_PIN) (the CPU wheel comes from pip's find-links)"
	$(PIP_INSTALL) $(TORCH_PIN)
	@echo ">>> $(MMCV_PIN)"
	@if $(PY) -c 'import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != "2.1.0")' 2>/dev/null; then \
		echo "mmcv 2.1.0 with compiled ops is already installed"; \
	elif $(PIP_INSTALL) --only-binary mmcv --no-deps --force-reinstall $(MMCV_PIN); then \
		echo "installed a prebuilt mmcv wheel"; \
	else \
		echo "No prebuilt mmcv 2.1.0 wheel for this Python/platform in pip's"; \
		echo "find-links (which include $(SHARED_WHEELS) when it exists)."; \
		echo "Building mmcv 2.1.0 with its C++ ops from source: this takes about"; \
		echo "45 minutes on 2 CPU cores."; \
		MMCV_WITH_OPS=1 $(PIP_INSTALL) --no-build-isolation --no-deps --force-reinstall $(MMCV_PIN); \
	fi
	@echo ">>> pinned runtime dependencies (and mmcv's own)"
	$(PIP_INSTALL) -r $(REQ)/pinned.txt
	@$(PY) -c 'import mmcv.ops' || { echo "mmcv is installed without its compiled ops" >&2; exit 1; }
	@rm -f $(STAMPS)/deps-*
	@touch $@

$(PKG_STAMP): $(DEPS_STAMP)
	@mkdir -p $(STAMPS)
	@echo ">>> mmdet_conddetr (editable)"
	$(PIP) install --no-deps --no-build-isolation -e .
	@rm -f $(STAMPS)/package-*
	@touch $@

$(TESTS_STAMP): $(DEPS_STAMP)
	@mkdir -p $(STAMPS)
	@echo ">>> test dependencies"
	$(PIP_INSTALL) -r $(REQ)/pinned-tests.txt
	@rm -f $(STAMPS)/tests-*
	@touch $@

test: install-tests
	$(PY) -m pytest tests -q

demo: install
	@if [ ! -f tools/run_demo.sh ]; then \
		echo "make demo: tools/run_demo.sh does not exist in this checkout." >&2; \
		exit 1; \
	fi
	bash tools/run_demo.sh

bench: install
	@if [ ! -f tools/analysis_tools/benchmark.py ]; then \
		echo "make bench: tools/analysis_tools/benchmark.py does not exist in this checkout." >&2; \
		exit 1; \
	fi
	@mkdir -p work_dirs
	$(PY) tools/analysis_tools/benchmark.py --out work_dirs/bench.json

clean:
	rm -rf $(STAMPS) build dist *.egg-info mmdet_conddetr/.mim .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
