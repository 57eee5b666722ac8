# Single entry point. Every target installs what is missing first (tools/bootstrap.py is
# idempotent and returns in under a second when .venv is up to date).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint clean

install:
	@$(PYTHON) tools/bootstrap.py

# The main job: the whole canary loop (data, model server, router, train, canary, rollout, history).
# Flags go through DEMO_ARGS, e.g. make run DEMO_ARGS="--rows-per-span 900 --train-steps 1000".
run: install
	@$(BIN)/tfx-canary demo $(DEMO_ARGS)

# All tests, on TEST_WORKERS processes (pytest-xdist), one test file at a time each; tests/conftest.py
# starts the long files first and keeps two of them off one worker. TEST_WORKERS=0 runs them in this
# process.
# Three workers on two cores: the end-to-end files wait on servers and rollout steps ~40 % of the time
# (README, benchmark table). pytest exits 5 when it collects nothing: treat that as a failure, loudly.
TEST_WORKERS ?= 3
test: install
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	@$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .cache
