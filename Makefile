# The front door: `make dev` runs the whole stack locally, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests drive as real clients.
TEST_DEBS := swaks curl dovecot-imapd isync offlineimap3 fetchmail thunderbird libmail-dkim-perl rspamd opendkim-tools chromium chromium-driver

.PHONY: install dev test test-deps lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml layers/core/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[local]'
	touch $@

dev: install
	$(BIN)/mailpipe dev $(ARGS)

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

test-deps: $(VENV)/.test-installed
	scripts/install-sam.sh
	scripts/install-debs.sh $(TEST_DEBS)

# The tests mostly wait on sockets (moto, the gateway, the pollers, the clients), so two pytest
# processes (pytest-xdist) take far less time than one, even on two cores. --dist loadfile keeps a
# file's tests (and its module-scoped fixtures) in one process; each process has its own dev stack.
# TEST_WORKERS=0 runs them all in this process.
TEST_WORKERS ?= 2

test: test-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .venv-sam .aws-sam .mailpipe
