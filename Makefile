# sixbroker: make test (everything), make lab (the whole system running), make ipk (router packages).
PY      := .venv/bin/python
MPY     := .venv/bin/micropython
PYTEST  := $(PY) -m pytest

.PHONY: all test test-unit test-micropython test-e2e lab ipk bench bootstrap clean

all: test

bootstrap:
	@scripts/bootstrap

# The README's test command: every suite, from a fresh machine.
test: bootstrap test-unit test-micropython

test-unit: bootstrap
	$(PYTEST)

# The core tests again, unchanged, under the MicroPython Unix port.
test-micropython: bootstrap
	$(MPY) tests/mprun.py tests/core/test_*.py

clean:
	rm -rf dist .cache .pytest_cache .hypothesis
