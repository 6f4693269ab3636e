# anvil.cluster — developer and CI entry points.
# `make demo` deploys a cluster on the local testbed; `make test` runs every test this host can run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANVIL_CACHE ?= /var/cache/anvil
export ANVIL_STATE ?= /var/lib/anvil-dev
# Make the repository importable as the collection anvil.cluster without installing it.
COLLECTIONS_DIR := $(CURDIR)/build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_DIR)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := true
export PYTHONPATH := $(CURDIR)
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
SETUP_STAMP := $(VENV)/.setup-$(shell cat requirements.txt requirements-dev.txt scripts/setup.sh 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: help setup lint sanity unit integration e2e test checks bench demo build clean collection-link

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

setup: $(SETUP_STAMP) collection-link ## venv + pinned Python packages + Debian packages (idempotent, fast when done)

$(SETUP_STAMP): requirements.txt requirements-dev.txt scripts/setup.sh
	@bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	@rm -f $(VENV)/.setup-* && touch $@

# ansible.cfg finds the collection there. A directory in its place (an installed copy) would hide the
# checkout's own code, and ln would put the link inside it: refuse instead.
COLLECTION_LINK := $(COLLECTIONS_DIR)/ansible_collections/anvil/cluster
collection-link:
	@if [ -e $(COLLECTION_LINK) ] && [ ! -L $(COLLECTION_LINK) ]; then \
	  echo "$(COLLECTION_LINK) is a directory, not the link to this checkout: remove it and re-run" >&2; exit 1; fi
	@mkdir -p $(COLLECTIONS_DIR)/ansible_collections/anvil
	@ln -sfn $(CURDIR) $(COLLECTION_LINK)

lint: setup ## yamllint, ruff, ansible-lint (production profile)
	yamllint -s .
	antsibull-changelog lint
	ruff check .
	ruff format --check .
	ansible-lint --profile production

# SANITY_CORE=2.17.14: with that ansible-core (in a venv of its own) instead of the pinned one.
sanity: setup ## ansible-test sanity on the collection as it ships
	ANVIL_SANITY_CORE="$(SANITY_CORE)" bash scripts/sanity.sh "$(VERSION)"

unit: setup ## unit tests of pure logic
	bash scripts/pytest.sh tests/unit

integration: setup ## modules through Ansible against a real kube-apiserver + etcd + kwok
	bash scripts/pytest.sh tests/integration

# Two pytest-xdist workers: the node lifecycle tests (a testbed instance of their own) run next to the tests of
# the shared testbed (tests/e2e/conftest.py groups them); the 20 slowest tests are listed at the end.
E2E_ARGS ?= -n 2 --dist loadgroup --durations 20 -v
e2e: setup ## roles and playbooks on testbed machines (without the tests of make e2e-ha, -registry, -awx, -upgrade)
	bash scripts/pytest.sh tests/e2e -m "not ha and not registry_cluster and not awx and not upgrade" $(E2E_ARGS)

# make test: the e2e suite spends most of its time waiting for testbed machines, so the checks (lint, sanity,
# unit, integration) run beside it, two jobs at a time, both printing as they go (make's output sync would
# hold each suite's output until it ends). The artifacts come first, once: both lanes then find them cached
# (and tools/anvil_env.py's build lock keeps two builds apart).
test: setup ## everything this host can test
	@$(MAKE) --no-print-directory artifacts artifacts-helm artifacts-files
	@$(MAKE) --no-print-directory -j2 e2e checks
	@echo "make test: all suites passed"

checks: lint sanity unit integration ## every suite of make test but the e2e one

bench: setup ## benchmarks (print numbers; not pass/fail tests)
	@set -e; for b in tests/bench/bench_*.py; do [ -e "$$b" ] || continue; echo "== $$b"; m="$${b%.py}"; $(BIN)/python -m "$${m//\//.}"; done

build: setup ## build anvil-cluster-<version>.tar.gz
	mkdir -p build/dist
	ansible-galaxy collection build --force --output-path build/dist .
	@ls -l build/dist/anvil-cluster-$(VERSION).tar.gz

clean: ## remove build outputs (the artifact cache outside the repo is kept)
	rm -rf build .pytest_cache .ruff_cache tests/output

-include mk/*.mk
