# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
EXTRAS := test dev fast redis prices otel
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
CONFIG ?= config.yaml
LINTED := gateway tests $(wildcard bench)

.PHONY: run test check bench fmt clean lock native

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

# The pure core compiled with mypyc (gateway/native.py), rebuilt when a source changed. Without
# a C compiler the build fails and the gateway runs its Python sources, as it always can.
NATIVE         := gateway/_native/manifest.json
NATIVE_SOURCES := $(shell find gateway -name '*.py')

## native: compile the pure core (gateway/_native/); `run`, `test` and `bench` do it when a source changed
native: $(NATIVE)

$(NATIVE): $(STAMP) $(NATIVE_SOURCES)
	$(BIN)/python -m gateway.native_build \
		|| echo "make: no compiled build (see above); the gateway runs its Python sources"

## run: start the gateway on config.yaml (the demo route needs no API key and no network)
run: $(STAMP) $(NATIVE)
	$(BIN)/gateway --config $(CONFIG)

# The compiled modules' own tests, run a second time over their Python sources (the build a
# machine without a C compiler runs), less the exhaustive ones (every split of the bytes, many
# generated cases: the compiled run has them) and the servers' and clients' own tests (modules
# that are never compiled); test_lifetimes sends every kind of answer through both builds.
SOURCE_TESTS := tests/adapters tests/framing tests/encoders tests/stream tests/test_pipeline.py \
	tests/test_http.py tests/test_request.py tests/test_logs.py tests/test_idle.py \
	tests/test_values.py tests/test_native.py $(wildcard tests/test_metrics*.py) \
	tests/server/test_lifetimes.py

## test: the whole suite over the compiled build (the Python sources without one), then the
## compiled modules' tests over the sources (system tests skip with a reason unless
## GATEWAY_REQUIRE_SYSTEM_TESTS=1)
test: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest -q
	GATEWAY_NATIVE=0 $(BIN)/python -m pytest -q -m "not exhaustive" $(SOURCE_TESTS)

## check: formatting, lint and strict typing of gateway/ and bench/
check: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy --strict gateway bench

## bench: the benchmark (not part of `make test`); writes bench/results/
bench: $(STAMP) $(NATIVE)
	$(BIN)/python -m bench $(BENCH_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache gateway/_native
