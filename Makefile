# tierlake developer tasks. `make` alone lists them.

VENV ?= .venv
PYTEST_ARGS ?=
# Interpreter for a new venv; default: the first of python3.13 ... python3 that is 3.11+.
PYTHON ?=
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv up test lint

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: PYTEST_ARGS (e.g. PYTEST_ARGS='-x -k cart'), VENV, PYTHON"

venv: $(STAMP) ## Create the virtualenv (.venv) and install tierlake with its test extras

# Reinstalls only when pyproject.toml is newer than the last install.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || { \
		py="$(PYTHON)"; \
		for p in python3.13 python3.12 python3.11 python3; do \
			test -n "$$py" && break; \
			$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && py=$$p; \
		done; \
		test -n "$$py" || { echo "error: no Python 3.11+ found (make venv PYTHON=...)" >&2; exit 1; }; \
		echo "creating $(VENV) with $$py"; $$py -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $@

up: venv ## Run the whole system locally (tierlake up)
	$(VENV)/bin/tierlake up

test: venv lint ## Lint, then run the tests (PYTEST_ARGS passes options to pytest)
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then \
		echo "error: pytest collected no tests (exit 5): check the paths, -k and -m" >&2; fi; \
	exit $$rc

lint: venv ## Check the code: ruff on src, tests and bench, then mypy on src
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m mypy src
