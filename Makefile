# kiro-gateway: two commands. `make run` serves; `make test` lints and tests on SQLite and Postgres.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8990
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_DATA_DIR := $(CURDIR)/data/test
# The Redis tests' own database on the machine's Redis (flushed by every test that uses it).
TEST_REDIS_URL ?= redis://127.0.0.1:6379/13

.PHONY: run test test-sqlite test-postgres lint fakekiro bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-test.txt
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/python manage.py bootstrap
	@log="$${DATA_DIR:-$(CURDIR)/data}/jobs.log"; mkdir -p "$$(dirname "$$log")"; \
	echo "background jobs: logging to $$log"; \
	$(BIN)/python manage.py run_jobs >>"$$log" 2>&1 & jobs_pid=$$!; \
	trap 'kill -TERM $$jobs_pid 2>/dev/null; wait $$jobs_pid 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	$(BIN)/daphne -b "$(HOST)" -p "$(PORT)" kiro_site.asgi:application

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

test: lint test-sqlite test-postgres

# The browser tests (tests/browser.py) drive Debian's headless Chromium through Playwright;
# `playwright install` is never run.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

test-sqlite: $(VENV)/.installed-test chromium
	@echo "== pytest on SQLite =="
	env -u DATABASE_URL -u REDIS_URL TEST_REDIS_URL="$(TEST_REDIS_URL)" DATA_DIR="$(TEST_DATA_DIR)" $(BIN)/python -m pytest

test-postgres: $(VENV)/.installed-test chromium
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$(TEST_DATABASE_URL)" 2>/dev/null; then \
		echo "== pytest on Postgres ($(TEST_DATABASE_URL)) =="; \
		env -u REDIS_URL TEST_REDIS_URL="$(TEST_REDIS_URL)" DATA_DIR="$(TEST_DATA_DIR)" DATABASE_URL="$(TEST_DATABASE_URL)" $(BIN)/python -m pytest; \
	else \
		echo ""; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		echo "!! PostgreSQL is NOT reachable at $(TEST_DATABASE_URL)"; \
		echo "!! The Postgres half of the suite did NOT run."; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		if [ "$$CI" = "true" ]; then echo "CI=true: failing."; exit 1; fi; \
	fi

fakekiro: $(VENV)/.installed
	$(BIN)/python manage.py fakekiro --port 8991

bench: $(VENV)/.installed-test
	$(BIN)/python bench/protocol.py

clean:
	rm -rf $(VENV) $(TEST_DATA_DIR)
