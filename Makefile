# Quick start on a fresh Debian 12 machine, as root:
#   make up     install what is needed, bring up the default infrastructure, print the site URL
#   make test   install what the tests need, run the whole suite
#   make down   stop everything and remove the emulated hosts (data kept; `make purge` deletes it)
SHELL := /bin/bash
VENV := .venv
PYTHON ?= /usr/bin/python3
WEBINFRA := $(VENV)/bin/webinfra
TOPOLOGY ?=

.PHONY: up down purge test unit lint deps test-deps venv bench

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

# Exact versions from constraints.txt (reproducible installs); the test extra includes the plots extra
# (matplotlib, for the chaos PNGs).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]' -c constraints.txt
	touch $@

venv: $(VENV)/.installed

up: deps venv
	$(WEBINFRA) up $(if $(TOPOLOGY),-f $(TOPOLOGY))

down: venv
	$(WEBINFRA) down

# `make purge` is the confirmation: no question asked.
purge: venv
	$(WEBINFRA) down --purge --yes

test: test-deps venv
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest tests/unit tests/site -m "not integration"

# mypy and lint-imports read their settings and contracts from pyproject.toml ([tool.mypy], [tool.importlinter]).
lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: deps venv
	$(VENV)/bin/webinfra bench
