# berth developer entry points. Quick start: `make demo`, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The virtualenv is rebuilt only when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
BUILD := build

.PHONY: venv lint test test-unit test-integration test-package test-deps bench demo demo-aws packages clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check agent tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Debian tools the integration and package tests need; CI's machine is fresh and runs as root.
TEST_TOOLS := debootstrap:debootstrap rpm:rpm rpmbuild:rpm setfacl:acl systemd-analyze:systemd dpkg-deb:dpkg
test-deps:
	@missing=""; for pair in $(TEST_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing$$missing (package tests will be skipped)"; fi; fi

test: $(STAMP) test-deps lint
	$(BIN)/pytest -q

test-unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not package"

test-integration: $(STAMP)
	$(BIN)/pytest -q -m integration

test-package: $(STAMP) test-deps
	$(BIN)/pytest -q -m package

demo: $(STAMP)
	./demo/demo.sh

# The agent on its SQS channel against a local moto server (no AWS account); stops everything it started.
demo-aws: $(STAMP)
	PY=$(BIN)/python ./demo/demo_aws.sh

# Machine-image packages (docs/install.md): dist/berth-agent_<version>_all.deb and dist/berth-agent-<version>.noarch.rpm,
# made with dpkg-deb and rpmbuild (Debian's `rpm` package) from one staged tree; berth's dependencies come from PyPI
# (pip, cached under build/package-cache) as a pure-Python folder, /opt/berth/lib. PACKAGE_ARGS="--formats deb" etc.
packages: $(STAMP)
	$(BIN)/python packaging/build.py --out dist $(PACKAGE_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(BUILD) dist .demo .demo-aws .pytest_cache .mypy_cache .ruff_cache
