# Everything a newcomer needs: `make local` runs the pipeline on this machine, `make test` checks it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
BIN         := $(VENV)/bin
PY          := $(BIN)/python
RUNTIME     := 3.13
export AWS_DEFAULT_REGION ?= us-east-1
# sam build looks for python$(RUNTIME) on PATH: the venv provides it.
export PATH := $(abspath $(BIN)):$(PATH)

# Find a python$(RUNTIME) wherever this machine keeps it: PATH, pyenv, uv, asdf/mise, /usr/local.
define find_python
for candidate in "$$PYTHON" "$$(command -v python$(RUNTIME) 2>/dev/null)" \
	$$(pyenv root 2>/dev/null | sed 's#$$#/versions#' | xargs -I{} sh -c 'ls -d {}/$(RUNTIME)*/bin/python$(RUNTIME) 2>/dev/null' | sort -rV) \
	"$$(uv python find $(RUNTIME) 2>/dev/null)" \
	$$(ls -d $$HOME/.local/share/mise/installs/python/$(RUNTIME)*/bin/python$(RUNTIME) $$HOME/.asdf/installs/python/$(RUNTIME)*/bin/python$(RUNTIME) 2>/dev/null) \
	/usr/local/bin/python$(RUNTIME) /usr/bin/python$(RUNTIME) /opt/homebrew/bin/python$(RUNTIME); do \
	if [ -n "$$candidate" ] && "$$candidate" -c 'import sys; assert sys.version_info[:2] == tuple(map(int, "$(RUNTIME)".split(".")))' 2>/dev/null; then \
		echo "$$candidate"; exit 0; fi; \
done; echo "Python $(RUNTIME) (the Lambda runtime) was not found: install it (pyenv install $(RUNTIME), uv python install $(RUNTIME), or your OS package) or set PYTHON=/path/to/python$(RUNTIME)" >&2; exit 1
endef

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| awk -F':.*## ' -v runtime='$(RUNTIME)' '{gsub(/\$$\(RUNTIME\)/, runtime, $$2); printf "  make %-12s %s\n", $$1, $$2}'

# uv installs the lock in seconds (pip takes minutes): the one on PATH, else uv==$(UV_VERSION) from PyPI into
# the venv (a bare machine has only Python); pip installs the lock itself only when neither works.
UV_VERSION := 0.9.7
$(VENV)/.installed: requirements-dev.lock pyproject.toml client/pyproject.toml
	@python_bin="$$($(find_python))" && echo "using $$python_bin" && \
	{ [ -x $(PY) ] && $(PY) -c 'import sys; assert sys.version_info[:2] == ($(subst .,$(comma),$(RUNTIME)))' 2>/dev/null || "$$python_bin" -m venv --clear $(VENV); }
	@uv="$$(command -v uv || true)"; \
	if [ -z "$$uv" ] && $(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" >/dev/null 2>&1; then uv=$(BIN)/uv; fi; \
	if [ -n "$$uv" ] && echo "installing requirements-dev.lock with $$uv" && \
		"$$uv" pip install --quiet --native-tls --python $(PY) --require-hashes -r requirements-dev.lock && \
		"$$uv" pip install --quiet --native-tls --python $(PY) --no-deps -e . -e ./client; then :; \
	else \
		echo "uv unavailable or failed: installing requirements-dev.lock with pip (slower)"; \
		$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock && \
		$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . -e ./client; \
	fi
	@touch $@

comma := ,

.PHONY: install
install: $(VENV)/.installed  ## create .venv with the pinned tools (Python $(RUNTIME))

.PHONY: test
# On every core (pytest-xdist): each test module stays on one worker (--dist loadfile), so a module's
# local stack, moto server or SAM build is started once, by that worker, on ports and folders of its own.
# `-n auto` is two workers a core and the longest modules go first (tests/conftest.py): the suite waits
# on local stacks, builds and retries more than it computes. PYTEST_XDIST_AUTO_NUM_WORKERS=N sets N.
test: install  ## run every test: unit, SAM build, local stack end to end
	$(PY) -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

# The fast path: no SAM build, no local stack, no sam local. On all cores when pytest-xdist is installed.
.PHONY: test-unit
test-unit: install  ## unit and fuzz tests only (tests/unit, tests/fuzz): no SAM build, no local stack
	$(PY) -m pytest tests/unit tests/fuzz $$($(PY) -c 'import xdist' 2>/dev/null && printf '%s' '-n auto') $(PYTEST_ARGS)

.PHONY: openapi
openapi: install  ## regenerate openapi.json (the client API's contract) from the API's routes
	PYTHONPATH=layers/shared:functions/api $(PY) -c 'import json, api_handler; print(json.dumps(json.loads(api_handler.app.contract_json()), indent=2))' > openapi.json

.PHONY: lint
lint: install  ## ruff, mypy and the import contracts (lint-imports; make test runs them too)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=layers/shared $(BIN)/lint-imports --no-cache

.PHONY: build
build: install  ## sam validate --lint, sam build, and the bytecode Lambda needs to start fast
	$(BIN)/sam validate --lint
	$(BIN)/sam build
	$(PY) scripts/compile_bytecode.py .aws-sam/build

.PHONY: local
local: install  ## run the whole pipeline on this machine (no AWS, no Docker)
	$(PY) -m devstack

.PHONY: chaos
chaos: install  ## N tasks (CHAOS_TASKS, default 200) through the local stack with faults injected at random
	$(PY) -m devstack.local.chaos --tasks $${CHAOS_TASKS:-200}

.PHONY: bench
bench: install  ## the performance budget: every figure against its floor and target, measured in one run, one table
	$(PY) -m tests.bench

.PHONY: lock
lock:  ## re-pin requirements-dev.lock (pyproject.toml + the layer's requirements.in), then the layer's requirements.txt from it
	uv pip compile pyproject.toml layers/shared/requirements.in --extra dev --python-version $(RUNTIME) \
		--python-platform linux --generate-hashes -o requirements-dev.lock
	$(PY) scripts/layer_requirements.py

.PHONY: deploy
deploy: build  ## sam deploy --guided (needs AWS credentials)
	$(BIN)/sam deploy --guided

.PHONY: clean
clean:  ## remove the venv and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache

# sam local (needs Docker or Finch): the template's functions in Lambda containers, AWS (moto) and the
# upstream (the emulator) as containers on one network; see devstack/sam_local/.
SAM_LOCAL_PORT ?= 3000

.PHONY: sam-local
sam-local: install  ## sam build + sam local start-api on 127.0.0.1:3000, AWS and the upstream in containers (Docker/Finch)
	$(PY) -m devstack.sam_local run --sam $(BIN)/sam --port $(SAM_LOCAL_PORT)

# Client apps of the deployed stack (scripts/clients.py, boto3 with your AWS credentials): each has its own
# API key on the stack's usage plan, and its webhook signing secret in SSM. STACK= and REGION= default to
# samconfig.toml's.
CLIENTS := $(PY) scripts/clients.py $(if $(STACK),--stack $(STACK)) $(if $(REGION),--region $(REGION))

.PHONY: add-client
add-client: install  ## NAME=...: a client app's own API key and webhook signing secret on the deployed stack, printed once
	$(CLIENTS) add "$(NAME)"

.PHONY: remove-client
remove-client: install  ## NAME=...: delete that client's API key (its requests then get 403) and signing secret
	$(CLIENTS) remove "$(NAME)"

.PHONY: list-clients
list-clients: install  ## the deployed stack's client apps and their key ids
	$(CLIENTS) list

.PHONY: rotate-webhook-secret
rotate-webhook-secret: install  ## NAME=... [FINISH=1]: a new webhook signing secret beside the old (both sign); FINISH=1 drops the old
	$(CLIENTS) rotate-secret "$(NAME)" $(if $(filter-out 0 no false,$(FINISH)),--finish)
