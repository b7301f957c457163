# The two commands: `make run` (the whole system on embedded defaults) and `make test` (the full suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# PostgreSQL used by the second pass of the monolith's tests (pytest-django creates test_<name>).
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/legacy


NODE_DIR := .cache/node
NODE_STAMP := $(NODE_DIR)/.installed-stamp

.PHONY: install node-deps browser-deps bench-tools bench run test test-sqlite test-postgres fuzz reliability-report lint format lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A real Unleash server and the Unleash client specification, for the flag tests (~30 s, ~200 MB, once).
$(NODE_STAMP): tests/support/node/package.json tests/support/node/package-lock.json
	mkdir -p $(NODE_DIR)
	cp tests/support/node/package.json tests/support/node/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node-deps: $(NODE_STAMP)

# Headless Chromium renders the parity HTML report in a test (Debian's package; only when missing).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "== installing chromium (Debian package) for the report rendering test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: install
	$(BIN)/python scripts/run_stack.py

test: lint test-sqlite test-postgres

test-sqlite: install node-deps browser-deps
	env -u DATABASE_URL $(BIN)/pytest

# Under CI=true PostgreSQL is required: an unreachable server fails the run.
test-postgres: install
	@if [ "$$CI" = "true" ] || $(BIN)/python scripts/port_open.py 127.0.0.1 5432; then \
		echo "== legacy and contract tests on PostgreSQL ($(PG_TEST_URL))"; \
		DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest tests/legacy tests/contract; \
	else \
		echo "== PostgreSQL not reachable on 127.0.0.1:5432: skipping the PostgreSQL pass (never skipped under CI=true)"; \
	fi

# nginx and wrk from Debian's packages (only when missing) and the Python extras the benchmarks use.
bench-tools: install
	@command -v nginx >/dev/null 2>&1 && command -v wrk >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null; }
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[bench]'

# Benchmarks: never part of `make test`. QUICK=1 for a shorter run (~3 min on 2 cores). The
# prerequisites are what the scripts' NEEDS name (tests/bench checks it): nginx, wrk, the bench
# extra, the Unleash server. Each script creates, migrates and seeds its database itself.
bench: bench-tools node-deps
	$(BIN)/python bench/run_all.py $(if $(QUICK),--quick,)

# Fuzzing (ADR 0019, fuzz/__init__.py): each parser harness coverage-guided with atheris for FUZZ_SECONDS
# (new inputs in .cache/fuzz/, a crash stops the run), then schemathesis on its own stack with
# API_FUZZ_EXAMPLES new requests per operation (make test runs both briefly, the same inputs every run).
FUZZ_SECONDS ?= 60
API_FUZZ_EXAMPLES ?= 200
fuzz: install
	@for target in $$($(BIN)/python -c 'from fuzz import TARGETS; print(*TARGETS)'); do \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s"; \
		$(BIN)/python -m fuzz $$target --seconds $(FUZZ_SECONDS) 2>&1 | grep -E '^(INFO: Seed|Done|==|SUMMARY)|Error|Traceback|crash' ; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
	API_FUZZ_EXAMPLES=$(API_FUZZ_EXAMPLES) API_FUZZ_RANDOM=1 $(BIN)/pytest tests/api -q

# The fault scenarios and the idle and slow clients of tests/reliability (also in make test, with their
# bounds) once more, as the README's Reliability tables (~65 s; .cache/reliability.md).
reliability-report: install node-deps
	$(BIN)/python -m tests.reliability.report

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-resolve the newest versions the ranges in pyproject.toml allow and pin them.
lock:
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/python -m pip install -q --upgrade pip
	.cache/lock-venv/bin/python -m pip install -q -e '.[dev]'
	{ echo "# Pinned versions for a reproducible install: pip install -c constraints.txt -e '.[dev]'"; \
	  echo "# Regenerate with: make lock"; \
	  .cache/lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .import_linter_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
