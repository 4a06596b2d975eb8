# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
EXTRAS := test dev fast redis prices otel
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
CONFIG ?= config.yaml
LINTED := gateway tests $(wildcard bench)

.PHONY: run test check bench fmt clean lock

# Installs exactly the versions in the lock (with their hashes), then the project itself.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## lock: re-resolve requirements.lock from pyproject.toml (newest allowed versions, with hashes)
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml $(addprefix --extra ,$(EXTRAS)) --generate-hashes \
		--python-version 3.11 --custom-compile-command "make lock" -o $(LOCK)

## run: start the gateway on config.yaml (the demo route needs no API key and no network)
run: $(STAMP)
	$(BIN)/gateway --config $(CONFIG)

## test: the whole suite (system tests skip with a reason unless GATEWAY_REQUIRE_SYSTEM_TESTS=1)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## check: formatting, lint and strict typing of gateway/ and bench/
check: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy --strict gateway bench

## bench: the benchmark (not part of `make test`); writes bench/results/
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
