# EasyRec Online. `make run` serves the whole service on http://127.0.0.1:5000; `make test` runs
# every test. Both set up what they need first (infra/setup.sh; fast when nothing changed).
.PHONY: setup run test test-unit test-integration test-localstack test-e2e test-repeat lint readme openapi clean-state

setup:
	@infra/setup.sh

run: setup
	.venv/bin/python -m infra.local_runner

# On LocalStack: the suite's storage, stream and API tests, and one real training and inference over
# its S3; the other model-runtime tests train the same way on either backend (moto's pass runs them),
# and running them twice took a CI run past 45 minutes.
LOCALSTACK_SELECTION = -m "not model_runtime or cloud_contract"
PYTEST = .venv/bin/python -m pytest
# Hypothesis draws the same examples on every run (tests/conftest.py registers the profile).
export HYPOTHESIS_PROFILE ?= ci

# Two test processes share the two cores (pytest-xdist); a module's tests stay in one process, in
# order, with its module fixtures (a running service, a trained model) built once.
PARALLEL = -n 2 --dist loadfile

# Fail fast, cheapest first: lint and unit tests (stop at the first failure), then integration over
# the wire to moto, then end to end against the running service, then integration on LocalStack.
test: setup
	$(PYTEST) -x tests/unit
	$(PYTEST) $(PARALLEL) --durations=15 tests/integration
	$(PYTEST) $(PARALLEL) --durations=15 tests/e2e
	.venv/bin/python -m infra.localstack -- $(PYTEST) $(PARALLEL) tests/integration $(LOCALSTACK_SELECTION)

test-unit: setup
	$(PYTEST) -x tests/unit

test-integration: setup
	$(PYTEST) $(PARALLEL) tests/integration

test-localstack: setup
	.venv/bin/python -m infra.localstack -- $(PYTEST) $(PARALLEL) tests/integration $(LOCALSTACK_SELECTION)

test-e2e: setup
	$(PYTEST) $(PARALLEL) tests/e2e

# The flake hunt: the tests P and K select (a path; a pytest -k expression), N times in a row, in two
# processes as `make test` runs them, stopping at the first failure.
# `make test-repeat N=5 P=tests/e2e`, `make test-repeat P=tests/integration/test_model_runtime.py K=drift`
N ?= 5
P ?= tests
K ?=
test-repeat: setup
	@for i in $$(seq 1 $(N)); do \
	  echo "test-repeat: run $$i of $(N)"; \
	  $(PYTEST) $(PARALLEL) -x -q $(P) $(if $(K),-k "$(K)") || { echo "test-repeat: run $$i of $(N) failed"; exit 1; }; \
	done; echo "test-repeat: $(N) of $(N) passed"

lint: setup
	.venv-tools/bin/sam validate --lint
	.venv-tools/bin/ruff check .

readme: setup
	.venv/bin/python infra/readme_settings.py

# The OpenAPI document GET /openapi.json serves, rebuilt from the request models (a test keeps it current).
openapi: setup
	PYTHONPATH=shared .venv/bin/python -m easyrec_online.control.openapi

clean-state:
	rm -rf .local/state
