# EasyRec Online. `make run` serves the whole service on http://127.0.0.1:5000; `make test` runs
# every test. Both set up what they need first (infra/setup.sh; fast when nothing changed).
.PHONY: setup run test test-unit test-integration test-localstack test-e2e lint readme clean-state

setup:
	@infra/setup.sh

run: setup
	.venv/bin/python -m infra.local_runner

# On LocalStack: the suite's storage, stream and API tests, and one real training and inference over
# its S3; the other model-runtime tests train the same way on either backend (moto's pass runs them),
# and running them twice took a CI run past 45 minutes.
LOCALSTACK_SELECTION = -m "not model_runtime or cloud_contract"

# Everything, then the integration suite again on LocalStack (host mode) instead of moto.
test: setup
	.venv/bin/python -m pytest
	.venv/bin/python -m infra.localstack -- .venv/bin/python -m pytest tests/integration $(LOCALSTACK_SELECTION)

test-unit: setup
	.venv/bin/python -m pytest tests/unit

test-integration: setup
	.venv/bin/python -m pytest tests/integration

test-localstack: setup
	.venv/bin/python -m infra.localstack -- .venv/bin/python -m pytest tests/integration $(LOCALSTACK_SELECTION)

test-e2e: setup
	.venv/bin/python -m pytest tests/e2e

lint: setup
	.venv-tools/bin/sam validate --lint
	.venv-tools/bin/ruff check .

readme: setup
	.venv/bin/python infra/readme_settings.py

clean-state:
	rm -rf .local/state
