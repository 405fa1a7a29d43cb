# Two commands for a fresh machine:
#   make up     install into .venv and start the embedded default (domicile up)
#   make test   install into .venv and run every check and test
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install up test lint bench chromium

install: $(VENV)/.installed

# The console's browser tests and the monitor's PDF report drive Debian's chromium
# (Playwright never downloads one); only the test run needs it, not `make up`.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

up: install
	$(BIN)/domicile up $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint chromium
	$(BIN)/pytest -n 2 -p no:cacheprovider

bench: install
	$(BIN)/python bench/read_path.py
	$(BIN)/python bench/registration.py
	$(BIN)/python bench/ledger.py --quick
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/batch_read.py
