# Every image of the platform, one target each. Build from the repository root:
#   docker build --target inference-service -t inference-service .
#   docker build --target executor-service -t executor-service .
#   docker build --target web-ui -t web-ui .
#   docker build --target simulator -t simulator .
# A build stage per package installs its dependencies first (a layer that survives code
# changes), then the package; the target copies only its virtualenv and assets.

FROM python:3.11-slim AS workspace
COPY --from=ghcr.io/astral-sh/uv:0.8 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    ASSETS_MANIFEST=/app/assets/manifest.toml ASSETS_CACHE_DIR=/app/.cache/assets
WORKDIR /app
# The lock covers the whole workspace, so every member's pyproject.toml is needed to read it.
COPY pyproject.toml uv.lock ./
COPY common/pyproject.toml common/pyproject.toml
COPY client/pyproject.toml client/pyproject.toml
COPY inference-service/pyproject.toml inference-service/pyproject.toml
COPY executor-service/pyproject.toml executor-service/pyproject.toml
COPY simulator/pyproject.toml simulator/pyproject.toml
COPY web-ui/pyproject.toml web-ui/pyproject.toml
COPY assets/manifest.toml assets/manifest.toml

FROM workspace AS inference-service-build
RUN uv sync --frozen --no-dev --package inference-service --no-install-workspace
COPY common/src common/src
COPY inference-service/src inference-service/src
RUN uv sync --frozen --no-dev --package inference-service --no-editable
# Only the label files (a few kB, sha256-checked): GET /models shows labels and counts.
RUN .venv/bin/inference-assets fetch --kind labels

FROM workspace AS executor-service-build
RUN uv sync --frozen --no-dev --package executor-service --no-install-workspace
COPY common/src common/src
COPY executor-service/src executor-service/src
RUN uv sync --frozen --no-dev --package executor-service --no-editable
# Models and labels from their pinned upstream URLs, verified by sha256 at build time.
RUN .venv/bin/inference-assets fetch --kind model --kind labels

# The API's two clients: the client library, and the sample images and MNIST digits they
# send, each with its credit.
FROM workspace AS clients-build
COPY common/src common/src
COPY client/src client/src
COPY simulator/src simulator/src
COPY web-ui/src web-ui/src
RUN uv sync --frozen --no-dev --package simulator --no-editable \
    && uv sync --frozen --no-dev --package web-ui --no-editable --inexact \
    && .venv/bin/inference-assets fetch --kind image --kind dataset

FROM python:3.11-slim AS runtime
# The filesystem image store's mount point: a new named volume copies its owner.
RUN useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /app/.cache/images && chown app /app/.cache/images
WORKDIR /app
COPY assets/manifest.toml assets/manifest.toml
ENV PATH=/app/.venv/bin:$PATH \
    ASSETS_MANIFEST=/app/assets/manifest.toml \
    ASSETS_CACHE_DIR=/app/.cache/assets

# What both services add: the contracts (the executor checks every request against
# asyncapi.yaml), a user of their own, and SIGTERM to stop them cleanly.
FROM runtime AS service
COPY openapi openapi
ENV OPENAPI_DIR=/app/openapi
USER app
STOPSIGNAL SIGTERM

# The job service: API, outbox relay, result folder and deadline sweeper in one process.
# uvicorn drains on SIGTERM; give it the 10 s it allows itself.
FROM service AS inference-service
COPY --from=inference-service-build /app/.venv /app/.venv
COPY --from=inference-service-build --chown=app /app/.cache/assets /app/.cache/assets
ENV SERVICE_HOST=0.0.0.0 SERVICE_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["inference-service"]

# The executor: a Kafka consumer group member that runs the manifest's TFLite models.
# SIGTERM: stop fetching, finish in-flight jobs, publish, commit, exit 0. Allow the orchestrator
# a grace period of at least EXECUTOR_SHUTDOWN_TIMEOUT_S (60 s by default) before SIGKILL.
FROM service AS executor-service
COPY --from=executor-service-build /app/.venv /app/.venv
COPY --from=executor-service-build /app/.cache/assets /app/.cache/assets
ENV EXECUTOR_HTTP_HOST=0.0.0.0
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=2)"]
CMD ["executor-service"]

# The Streamlit page over the public API.
FROM runtime AS web-ui
COPY --from=clients-build /app/.venv /app/.venv
COPY --from=clients-build /app/.cache/assets /app/.cache/assets
COPY web-ui/.streamlit .streamlit
# Nothing leaves the container: no usage statistics (the `web-ui` launcher forces it off too).
ENV STREAMLIT_BROWSER_GATHER_USAGE_STATS=false STREAMLIT_SERVER_HEADLESS=true
EXPOSE 8501
ENTRYPOINT ["web-ui", "--server.address", "0.0.0.0", "--server.port", "8501"]

# The simulator CLI (simulate, watch, batch).
FROM runtime AS simulator
COPY --from=clients-build /app/.venv /app/.venv
COPY --from=clients-build /app/.cache/assets /app/.cache/assets
ENTRYPOINT ["simulator"]
