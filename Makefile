# Every workflow of the project is a target here. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export MOODLE_ARCHIVER_CACHE_DIR ?= $(HOME)/.cache/moodle-archive-operator
PYTEST_ARGS ?=

.PHONY: help setup test test-deps test-quick lint demo bench clean
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: ## install Debian packages, the .venv and MathJax (idempotent)
	@scripts/setup.sh

test: test-deps ## the whole test suite, the real-node end-to-end tier included (what CI runs)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

# What the whole suite needs, built only when its cache is cold. The Kubernetes tools (a Go
# build, CPU-bound) and setup + veraPDF + node-deps + images (mostly downloads) run side by side.
test-deps:
	@$(MAKE) --no-print-directory -j2 cluster-tools verapdf images

test-quick: setup verapdf cluster-tools ## the suite without the real-node tier (no containerd, no images)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff
	$(VENV)/bin/ruff check job-image operator tests bench

demo: setup node-deps cluster-tools ## the whole product here: control plane, real node, Helm chart, fake Moodle (make demo-down stops it)
	$(PY) scripts/demo.py up

bench: setup ## run the benchmarks in bench/
	$(PY) bench/runner_bench.py

clean: ## remove the venv and build leftovers (caches outside the repo stay)
	rm -rf $(VENV) build *.egg-info

-include mk/*.mk
