# One entry point for developers and CI. Every target runs from the repository root.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# ../shared is the asset mirror when it exists (this project's CI); otherwise assets come from upstream.
export ASSETS_MIRROR ?= $(abspath $(wildcard ../shared))
UV ?= uv
RUN := $(UV) run --frozen
STACK := python3 stack/localstack.py

.PHONY: install assets up down status logs kafka-topics kafka-consume lint test test-s3 pytest fuzz demo serve watch web-ui bench bench-executor bench-scale faults clean

install:  ## the Python workspace (uv is installed with pip when missing)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen --all-packages

assets: install  ## models, labels and sample images into .cache/assets, checked by sha256
	$(RUN) inference-assets fetch

up:  ## Kafka (KRaft) and FerretDB on 127.0.0.1, downloaded and built on first use
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
	$(RUN) streamlit run web-ui/src/web_ui/app.py --server.address 127.0.0.1 --server.port 8501 --server.headless true --browser.gatherUsageStats false

watch:  ## the event log, human-readable, from the beginning
	$(RUN) simulator watch --from-beginning

bench: serve  ## benchmark (not a test): the pipeline end to end against the bare model
	$(RUN) simulator bench --write docs/benchmarks.md

bench-executor: assets up  ## benchmark: the executor alone, from Kafka to result events
	$(RUN) python -m executor_service.bench --seconds 5

bench-scale: assets up  ## benchmark: 1, 2, 3 executor processes in one group drain the same backlog (docs/scaling.md)
	$(RUN) python -m executor_service.scale_bench --models mnist-lstm-tflm-float32 --jobs 1000
	$(RUN) python -m executor_service.scale_bench --models mobilenet-v2-imagenet-quant --jobs 300

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy common/src inference-service/src executor-service/src simulator/src web-ui/src

pytest: assets up
	$(RUN) pytest --cov --cov-report=term --cov-report=xml $(PYTEST_ARGS)

FUZZ_EXAMPLES ?= 250
fuzz: assets up  ## schemathesis over every operation, FUZZ_EXAMPLES each (250: over 3,000 requests)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(RUN) pytest tests/integration/service/test_schemathesis.py \
	  -p no:cacheprovider -q --hypothesis-show-statistics $(PYTEST_ARGS)

test: lint pytest  ## what CI runs: lint, types, then every test against the real stack

# SeaweedFS is built from the Go module proxy the first time (long on 2 cores), then cached in
# .cache/stack/bin; plain `make pytest` runs these tests too once it is built, and skips them before.
test-s3: assets up  ## the image-store contract on S3 (SeaweedFS) and jobs end to end with IMAGE_STORE=s3
	TEST_S3=1 $(RUN) pytest tests/integration/test_s3_image_store.py tests/integration/test_s3_end_to_end.py $(PYTEST_ARGS)

faults: assets  ## the full fault-injection run on a private stack: make faults JOBS=1000 (docs/faults.md)
	$(RUN) python -m tests.faults.runner --jobs $(or $(JOBS),1000) $(FAULTS_ARGS)

clean:
	$(STACK) down || true
	rm -rf .cache .venv .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml
