# One entry point for developers and CI. Every target runs from the repository root.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# ../shared is the asset mirror when it exists (this project's CI); otherwise assets come from upstream.
export ASSETS_MIRROR ?= $(abspath $(wildcard ../shared))
UV ?= uv
RUN := $(UV) run --frozen
STACK := python3 stack/localstack.py

.PHONY: install assets up down status logs kafka-topics kafka-consume lint test test-s3 pytest pytest-atomic atomicity fuzz demo serve watch web-ui bench bench-tools bench-executor bench-scale bench-tracing faults clean

install:  ## the Python workspace (uv is installed with pip when missing)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen --all-packages

assets: install  ## models, labels and sample images into .cache/assets, checked by sha256
	$(RUN) inference-assets fetch

up:  ## Kafka (KRaft) and FerretDB on 127.0.0.1 (versitygw too with STACK_S3=1), downloaded and built on first use
	$(STACK) up

down:  ## stops whatever up/serve/demo started (data stays in .cache/stack)
	$(STACK) down

status:
	$(STACK) status

logs:
	$(STACK) logs

kafka-topics:  ## the native Kafka tool: list and describe topics
	$(STACK) kafka-topics --describe

kafka-consume:  ## the native console consumer: make kafka-consume TOPIC=inference.jobs
	$(STACK) kafka-consume --topic $(or $(TOPIC),inference.jobs) --from-beginning

# The local platform's webhook receivers (make demo's) listen on loopback, over http.
serve: export WEBHOOK_ALLOW_HTTP = true
serve: export WEBHOOK_ALLOW_LOOPBACK = true
serve: assets  ## the stack, then the job service (http://127.0.0.1:8080) and an executor
	$(STACK) up --platform

demo: serve  ## the main job: everything up, simulated traffic beside the live event stream
	@# The watcher runs in the background; a non-interactive shell ignores SIGINT there, so TERM.
	@.venv/bin/simulator watch & watch=$$!; sleep 1; \
	.venv/bin/simulator simulate --scenario demo --no-progress \
	  && .venv/bin/simulator simulate --jobs 40 --concurrency 4 --no-progress; \
	status=$$?; sleep 2; kill -TERM $$watch; wait $$watch 2>/dev/null; \
	echo; echo "Still running: Swagger UI at http://127.0.0.1:8080/api/v1/inference/ui/ (make down stops it)"; \
	exit $$status

web-ui:  ## the Streamlit page at http://127.0.0.1:8501 (the API at API_URL, default: make serve's)
	$(RUN) web-ui --server.address 127.0.0.1 --server.port 8501

watch:  ## the event log, human-readable, from the beginning
	$(RUN) simulator watch --from-beginning

# The bench group (the peers' Starlette, uvicorn and Celery) is installed for these targets only.
BENCH := $(RUN) --group bench python -m
# apt-get as root, through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench-tools:  ## wrk and redis-server from Debian, when missing
	@command -v wrk >/dev/null && command -v redis-server >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk redis-server; }

bench: serve bench-tools  ## benchmark (not a test): the platform against a synchronous endpoint and Celery on Redis
	env $$($(STACK) env) API_URL=http://127.0.0.1:$${SERVICE_PORT:-8080}/api/v1/inference \
	  $(BENCH) benchmarks.pipeline --write docs/benchmarks.md

bench-executor: assets up  ## benchmark: the executor alone, from Kafka to result events
	env $$($(STACK) env) $(BENCH) benchmarks.executor --seconds 5

bench-scale: assets up  ## benchmark: 1, 2, 3 executor processes in one group drain the same backlog (docs/scaling.md)
	env $$($(STACK) env) $(BENCH) benchmarks.scale --models mnist-lstm-tflm-float32 --jobs 1000
	env $$($(STACK) env) $(BENCH) benchmarks.scale --models mobilenet-v2-imagenet-quant --jobs 300

bench-tracing: assets  ## benchmark: CPU per job with OpenTelemetry traces off and on (in-process, no servers)
	$(RUN) python -m benchmarks.tracing

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy common/src client/src inference-service/src executor-service/src simulator/src web-ui/src benchmarks tests/unit/service

pytest: assets up
	$(RUN) pytest --cov --cov-report=term --cov-report=xml $(PYTEST_ARGS)

# The MongoDB mode: the job service's tests again, on the stack's atomic MongoDB-API server
# instead of FerretDB (compare-and-set filters in the database, several replicas). Left out, to
# keep CI short: the tests whose requests never reach a database write (input refusals, the
# malformed image corpus, SIGTERM of the process).
ATOMIC_TESTS := tests/integration/service tests/integration/test_atomicity.py \
  --ignore=tests/integration/service/test_errors.py \
  --ignore=tests/integration/service/test_malformed_images.py \
  --ignore=tests/integration/service/test_process.py
pytest-atomic: assets  ## the job service's tests on the atomic test server; coverage adds to pytest's
	$(STACK) up --atomic-mongo
	TEST_MONGODB=atomic $(RUN) pytest --cov --cov-append --cov-report=term --cov-report=xml $(ATOMIC_TESTS) $(PYTEST_ARGS)

atomicity: install  ## the atomicity probe on FerretDB and on the atomic test server (docs/scaling.md)
	$(STACK) up --atomic-mongo
	$(RUN) python -m tests.integration.atomicity

FUZZ_EXAMPLES ?= 250
FUZZ_SCENARIOS ?= 100
fuzz: assets up  ## schemathesis over every operation, FUZZ_EXAMPLES each (250: over 3,000 requests), then FUZZ_SCENARIOS chains of linked calls
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SCENARIOS=$(FUZZ_SCENARIOS) $(RUN) pytest tests/integration/service/test_schemathesis.py \
	  -p no:cacheprovider -q --hypothesis-show-statistics $(PYTEST_ARGS)

# STACK_S3=1: `make up` builds versitygw too (about 2.5 CPU-minutes from empty Go caches, once)
# and starts it, so CI runs the image-store contract on every store and jobs end to end on S3.
test: export STACK_S3 := 1
test: lint pytest pytest-atomic  ## what CI runs: lint, types, every test on the real stack (S3 too), the service's again on the atomic server

# Plain `make pytest` runs these tests too once versitygw is built, and skips them before.
test-s3: export STACK_S3 := 1
test-s3: assets up  ## the image-store contract on S3 (versitygw) and jobs end to end with IMAGE_STORE=s3
	$(RUN) pytest tests/integration/test_s3_image_store.py tests/integration/test_s3_end_to_end.py $(PYTEST_ARGS)

faults: assets  ## the fault-injection run, open loop, on a private stack: make faults JOBS=1000 RATE=10 (docs/faults.md)
	$(RUN) python -m tests.faults.runner --jobs $(or $(JOBS),1000) --rate $(or $(RATE),10) $(FAULTS_ARGS)

clean:
	$(STACK) down || true
	rm -rf .cache .venv .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml
