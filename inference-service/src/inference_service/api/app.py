"""The Connexion application: the spec drives routing, validation and security."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import yaml
from connexion import AsyncApp
from connexion.exceptions import ProblemException
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from jsonschema import Draft4Validator
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from inference_common import tracing
from inference_service.api import problems
from inference_service.api.batch_uploads import BatchLimits
from inference_service.api.classify import ClassifyApi
from inference_service.api.handlers import (
    BatchesApi,
    Handlers,
    JobsApi,
    ModelsApi,
    Services,
    StreamsApi,
)
from inference_service.api.limits import MULTIPART_ALLOWANCE, BodyLimitMiddleware
from inference_service.api.ratelimit import RateLimiter, RateLimitMiddleware
from inference_service.api.security import api_key_handler
from inference_service.api.telemetry import (
    RequestTelemetry,
    RouteTemplates,
    server_span_options,
)
from inference_service.api.validation import validator_map
from inference_service.api.webhooks import WebhooksApi
from inference_service.domain.webhook_urls import TargetPolicy
from inference_service.metrics import ServiceMetrics
from inference_service.settings import ServiceSettings

SPEC_FILE = "inference-api.yaml"
# Served at the root, beside the API: an orchestrator's probes and Prometheus, without API keys.
ROOT_PATHS = ("/healthz", "/readyz", "/metrics")


def load_spec(openapi_dir: Path, *, with_api_keys: bool) -> dict[str, Any]:
    """The spec as served; without API keys configured its security requirement is lifted."""
    spec: dict[str, Any] = yaml.safe_load((openapi_dir / SPEC_FILE).read_text())
    if not with_api_keys:
        spec["security"] = []
    return spec


def _resolved(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    """A component schema whose `$ref`s to other components are inlined (one level)."""
    schema = dict(schemas[name])
    properties = {
        key: schemas[value["$ref"].rsplit("/", 1)[1]] if "$ref" in value else value
        for key, value in schema.get("properties", {}).items()
    }
    return {**schema, "properties": properties}


class AppRuntime(Services, Protocol):
    """What the app needs from the composition root (runtime.py), which builds it."""

    metrics: ServiceMetrics

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> dict[str, bool]: ...


def create_app(settings: ServiceSettings, runtime: AppRuntime) -> AsyncApp:
    clients = settings.clients_by_key()
    spec = load_spec(settings.openapi_dir, with_api_keys=bool(clients))
    schemas = spec["components"]["schemas"]
    options_validator = Draft4Validator(schemas["ModelOptions"])
    handlers = Handlers(
        models=ModelsApi(runtime),
        jobs=JobsApi(
            runtime,
            settings.base_path,
            options_validator,
            settings.max_image_bytes,
            callback_validator=Draft4Validator(_resolved(schemas, "WebhookTarget")),
            targets=TargetPolicy(settings.webhook_allow_http, settings.webhook_allow_loopback),
        ),
        batches=BatchesApi(
            runtime,
            settings.base_path,
            options_validator,
            BatchLimits(
                settings.batch_max_files, settings.batch_max_bytes, settings.max_image_bytes
            ),
        ),
        webhooks=WebhooksApi(runtime, settings.base_path),
        streams=StreamsApi(runtime, settings.sse_keepalive_seconds),
        classify=ClassifyApi(runtime, settings.max_image_bytes),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # Connexion warns on every multipart/JSON operation that it picked one body schema.
    logging.getLogger("connexion.operations.openapi3").setLevel(logging.ERROR)
    # ... and logs a line on every raw image body (no validator for image/*): one per job.
    logging.getLogger("connexion.middleware.validation").setLevel(logging.WARNING)
    app = AsyncApp(
        __name__,
        lifespan=lifespan,
        validator_map=validator_map(),
        security_map={"apiKey": api_key_handler(clients)},
    )
    app.add_api(
        spec,
        base_path=settings.base_path,
        resolver=Resolver(handlers.resolve),
        validate_responses=settings.validate_responses,
        # Unknown query or form parameters are refused (a typo like `stauts` is not ignored).
        strict_validation=True,
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/ui"),
    )
    if settings.rate_limit_per_second > 0:
        # Added first, so it is the outermost: a refused request is never read.
        app.add_middleware(
            RateLimitMiddleware,
            position=MiddlewarePosition.BEFORE_SWAGGER,
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            clients_by_key=clients,
            base_path=settings.base_path,
        )
    app.add_middleware(
        BodyLimitMiddleware,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        max_body_bytes=settings.max_image_bytes + MULTIPART_ALLOWANCE,
        # The challenge's endpoint answers every invalid input with 404, too large included.
        status_by_path={settings.base_path + "/mnist/classify": 404},
        # A batch carries many images: its own limit (the parts' boundaries and names too).
        max_by_path={
            settings.base_path + "/batches": settings.batch_max_bytes
            + MULTIPART_ALLOWANCE * (1 + settings.batch_max_files // 64)
        },
    )
    routes = RouteTemplates(settings.base_path, spec["paths"], ROOT_PATHS)
    if tracing.active_provider() is not None:
        # Added first, so outside RequestTelemetry: the request's span is current in there.
        app.add_middleware(
            OpenTelemetryMiddleware,
            position=MiddlewarePosition.BEFORE_EXCEPTION,
            **server_span_options(routes, untraced=ROOT_PATHS),
        )
    app.add_middleware(
        RequestTelemetry,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        metrics=runtime.metrics,
        routes=routes,
        access=settings.access_log,
    )
    app.add_error_handler(ProblemException, problems.from_connexion)
    allowed = problems.AllowedMethods(settings.base_path, spec["paths"])
    app.add_error_handler(HTTPException, allowed.handler)
    for error in problems.DOMAIN_ERRORS:
        app.add_error_handler(error, problems.from_domain)
    app.add_error_handler(Exception, problems.unexpected)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        checks = await runtime.ready()
        ready = all(checks.values())
        if ready:
            return JSONResponse({"status": "ready", "checks": checks})
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "not ready: " + ", ".join(k for k, ok in checks.items() if not ok),
                "instance": "/readyz",
                "checks": checks,
            },
            status_code=503,
            media_type=problems.PROBLEM_JSON,
        )

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
    return app
