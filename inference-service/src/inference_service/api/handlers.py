"""The operations of openapi/inference-api.yaml: parse, call the service, shape the answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any, Protocol

from connexion import request as current_request
from jsonschema import Draft4Validator
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from inference_service.api.batch_uploads import BatchLimits, uploaded_files
from inference_service.api.problems import Problem
from inference_service.api.security import owner_of
from inference_service.api.telemetry import request_span
from inference_service.api.validation import ValidationProblem, collect
from inference_service.api.views import batch_view, job_view, result_line, result_view
from inference_service.api.webhooks import checked_target
from inference_service.domain.batch import BatchProgress
from inference_service.domain.catalog import ModelCatalog, UnknownModel
from inference_service.domain.clock import as_utc
from inference_service.domain.images import check_size
from inference_service.domain.job import Job, JobFilter
from inference_service.domain.lifecycle import JobStatus
from inference_service.domain.webhook_urls import TargetPolicy
from inference_service.service_layer.batches import BatchService, NewBatch
from inference_service.service_layer.jobs import JobService, NewJob
from inference_service.service_layer.live import LiveEvent, LiveEvents, Subscription
from inference_service.service_layer.waiting import Classifier
from inference_service.service_layer.webhooks import Webhooks

Answer = tuple[Any, int, dict[str, str]]


class Services(Protocol):
    """What the handlers need, ready once the app has started."""

    @property
    def catalog(self) -> ModelCatalog: ...
    @property
    def service(self) -> JobService: ...
    @property
    def batches(self) -> BatchService: ...
    @property
    def live(self) -> LiveEvents | None: ...
    @property
    def classifier(self) -> Classifier: ...
    @property
    def webhooks(self) -> Webhooks: ...


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    """JSON, said explicitly: the spec also lists problem+json for every operation."""
    return body, status, {"Content-Type": "application/json", **(headers or {})}


def header(name: str) -> str | None:
    value = current_request.headers.get(name)
    return str(value) if value else None


def is_raw_image() -> bool:
    """The body is the image itself: neither a form nor JSON."""
    media_type = str(current_request.headers.get("content-type", "")).lower()
    return not media_type.startswith(("multipart/", "application/json"))


def raw_body(body: Any, max_bytes: int) -> bytes:
    """A raw image body as Connexion hands it over (bytes; text for some media types)."""
    data = body.encode() if isinstance(body, str) else bytes(body or b"")
    check_size(len(data), max_bytes)
    return data


@dataclass(eq=False)
class ModelsApi:
    services: Services

    async def list_models(self) -> Answer:
        return answer({"items": [entry.summary() for entry in self.services.catalog.entries()]})

    async def get_model(self, model: str) -> Answer:
        try:
            return answer(self.services.catalog.get(model).detail())
        except UnknownModel as exc:
            raise Problem(404, str(exc), "model-not-found") from None


@dataclass(eq=False)
class JobsApi:
    services: Services
    base_path: str
    options_validator: Draft4Validator
    max_image_bytes: int
    _: KW_ONLY
    callback_validator: Draft4Validator
    targets: TargetPolicy

    @property
    def service(self) -> JobService:
        return self.services.service

    def _view(self, job: Job) -> dict[str, Any]:
        return job_view(job, self.base_path)

    def _location(self, job_id: str) -> dict[str, str]:
        return {"Location": f"{self.base_path}/jobs/{job_id}"}

    async def list_jobs(
        self,
        *,
        status: list[str] | None = None,
        model: str | None = None,
        task: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        user: str | None = None,
    ) -> Answer:
        where = JobFilter(
            statuses=[JobStatus(s) for s in status or []],
            model=model,
            task=task,
            created_after=_instant(created_after, "created_after"),
            created_before=_instant(created_before, "created_before"),
        )
        jobs, next_cursor = await self.service.page(owner_of(user), where, cursor, limit)
        return answer({"items": [self._view(job) for job in jobs], "next_cursor": next_cursor})

    async def create_job(
        self,
        body: Any = None,
        image: UploadFile | None = None,
        user: str | None = None,
        *,
        model: str | None = None,
        name: str | None = None,
        execute: bool | None = None,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> Answer:
        """A form (fields and the `image` file), JSON (no image), or a raw image body with
        the fields as query parameters (no callback: that needs a form or JSON)."""
        given = {"model": model, "name": name, "execute": execute}
        options = {"top_k": top_k, "score_threshold": score_threshold}
        query = {key: value for key, value in {**given, **options}.items() if value is not None}
        data: bytes | None = None
        callback = None
        if is_raw_image():
            if model is None:
                raise _unusable_query("a raw image body needs the query parameter model", "model")
            fields: dict[str, Any] = query
            data = raw_body(body, self.max_image_bytes)
            options = {key: value for key, value in options.items() if value is not None}
        elif query:
            names = ", ".join(sorted(query))
            raise _unusable_query(f"query parameters ({names}) go with a raw image body only")
        else:
            fields = body or {}
            options = fields.get("options") or {}
            callback = fields.get("callback")
        name = fields.get("name")
        if image is not None:
            if image.size is not None:
                check_size(image.size, self.max_image_bytes)
            data = await image.read()
            options = form_object(options, self.options_validator, "/options")
            if callback is not None:
                callback = form_object(callback, self.callback_validator, "/callback")
            name = name or image.filename
        job, created = await self.service.create(
            NewJob(
                owner=owner_of(user),
                name=name or "untitled",
                model=fields["model"],
                options=options,
                image=data,
                execute=bool(fields.get("execute", False)),
                keep_image=bool(fields.get("keep_image", False)),
                idempotency_key=header("Idempotency-Key"),
                span=request_span(),
                callback=(
                    checked_target(self.targets, callback, "/callback") if callback else None
                ),
            )
        )
        return answer(self._view(job), 201 if created else 200, self._location(job.id))

    async def get_job(self, job_id: str, wait: float = 0.0, user: str | None = None) -> Answer:
        owner = owner_of(user)
        job = await self.service.get(owner, job_id)
        if wait > 0:
            job = await self.services.classifier.wait(owner, job, wait)
        return answer(self._view(job))

    async def delete_job(self, job_id: str, user: str | None = None) -> Response:
        await self.service.delete(owner_of(user), job_id, request_span())
        return Response(status_code=204)

    async def get_image(self, job_id: str, user: str | None = None) -> Response:
        data, media_type = await self.service.image(owner_of(user), job_id)
        return Response(content=data, media_type=media_type)

    async def put_image(
        self, job_id: str, body: bytes | None = None, user: str | None = None
    ) -> Answer:
        data = body or b""
        check_size(len(data), self.max_image_bytes)
        return answer(self._view(await self.service.put_image(owner_of(user), job_id, data)))

    async def execute_job(self, job_id: str, user: str | None = None) -> Answer:
        job = await self.service.execute(owner_of(user), job_id, request_span())
        return answer(self._view(job), 202, self._location(job_id))

    async def cancel_job(
        self, job_id: str, body: dict[str, Any] | None = None, user: str | None = None
    ) -> Answer:
        reason = (body or {}).get("reason")
        job = await self.service.cancel(owner_of(user), job_id, reason, request_span())
        return answer(self._view(job))

    async def get_result(self, job_id: str, user: str | None = None) -> Answer:
        return answer(result_view(await self.service.result(owner_of(user), job_id)))


@dataclass(eq=False)
class BatchesApi:
    services: Services
    base_path: str
    options_validator: Draft4Validator
    limits: BatchLimits

    @property
    def service(self) -> BatchService:
        return self.services.batches

    def _view(self, progress: BatchProgress) -> dict[str, Any]:
        return batch_view(progress, self.base_path)

    async def create_batch(
        self,
        body: dict[str, Any] | None = None,
        files: list[UploadFile] | None = None,
        archive: UploadFile | None = None,
        user: str | None = None,
    ) -> Answer:
        fields = body or {}
        request = NewBatch(
            owner=owner_of(user),
            model=fields["model"],
            options=form_object(fields.get("options"), self.options_validator, "/options"),
            idempotency_key=header("Idempotency-Key"),
            span=request_span(),
        )
        uploads = await asyncio.to_thread(uploaded_files, files or [], archive, self.limits)
        progress, created = await self.service.create(request, uploads)
        location = {"Location": f"{self.base_path}/batches/{progress.batch.id}"}
        return answer(self._view(progress), 201 if created else 200, location)

    async def get_batch(self, batch_id: str, user: str | None = None) -> Answer:
        return answer(self._view(await self.service.get(owner_of(user), batch_id)))

    async def cancel_batch(
        self, batch_id: str, body: dict[str, Any] | None = None, user: str | None = None
    ) -> Answer:
        reason = (body or {}).get("reason")
        progress = await self.service.cancel(owner_of(user), batch_id, reason, request_span())
        return answer(self._view(progress))

    async def delete_batch(self, batch_id: str, user: str | None = None) -> Response:
        await self.service.delete(owner_of(user), batch_id, request_span())
        return Response(status_code=204)

    async def get_results(self, batch_id: str, user: str | None = None) -> StreamingResponse:
        _batch, lines = await self.service.results(owner_of(user), batch_id)

        async def jsonl() -> AsyncIterator[bytes]:
            async for file, job in lines:
                yield (json.dumps(result_line(file, job)) + "\n").encode()

        return StreamingResponse(jsonl(), media_type="application/jsonl")


@dataclass(eq=False)
class StreamsApi:
    services: Services
    keepalive_seconds: float

    def _live(self) -> LiveEvents:
        live = self.services.live
        if live is None or not live.ready.is_set():
            raise Problem(
                503, "live events are not available on this replica yet", "no-live-events"
            )
        return live

    async def job_events(self, job_id: str, user: str | None = None) -> StreamingResponse:
        live = self._live()
        owner = owner_of(user)
        # Subscribe before reading the job, so nothing falls between the read and the stream.
        subscription = live.subscribe(owner, job_id)
        try:
            job = await self.services.service.get(owner, job_id)
        except Exception:
            live.unsubscribe(subscription)
            raise
        finished = job.status.terminal
        return _sse(self._events(live, subscription, finished))

    async def client_events(self, user: str | None = None) -> StreamingResponse:
        live = self._live()
        return _sse(self._events(live, live.subscribe(owner_of(user)), False))

    async def _events(
        self, live: LiveEvents, subscription: Subscription, finished: bool
    ) -> AsyncIterator[bytes]:
        try:
            yield b": subscribed\n\n"
            if finished:
                return
            while True:
                try:
                    event = await subscription.next(self.keepalive_seconds)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if event is None:
                    return
                yield sse_message(event)
        finally:
            live.unsubscribe(subscription)


def sse_message(event: LiveEvent) -> bytes:
    return f"event: {event.type}\nid: {event.id}\ndata: {event.structured}\n\n".encode()


def _sse(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def form_object(raw: object, validator: Draft4Validator, pointer: str) -> dict[str, Any]:
    """Multipart carries an object as a JSON string; check it like the JSON body's."""
    if isinstance(raw, dict):
        parsed: object = raw
    else:
        try:
            parsed = json.loads(str(raw)) if raw else {}
        except ValueError:
            detail = f"{pointer.lstrip('/')} is not valid JSON"
            raise ValidationProblem([{"detail": detail, "pointer": pointer}]) from None
    errors = collect(validator, parsed)
    if errors:
        raise ValidationProblem(
            [{**error, "pointer": pointer + error["pointer"]} for error in errors]
        )
    assert isinstance(parsed, dict)
    return parsed


def _unusable_query(detail: str, parameter: str | None = None) -> Problem:
    """Each parameter is valid on its own (the spec checked it); together with this body
    they are not: 422, like any other well-formed but unusable request."""
    error = {"detail": detail, **({"parameter": parameter} if parameter else {})}
    return Problem(422, detail, "invalid-parameter", errors=[error])


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        detail = f"{name} is not an RFC 3339 date-time"
        error = {"detail": detail, "parameter": name}
        raise Problem(400, detail, "invalid-parameter", errors=[error]) from None


class Handlers:
    """Resolves operationIds (`<group>.<method>`: `jobs.get_job`) to bound methods."""

    def __init__(self, **groups: object) -> None:
        self._groups = groups

    def resolve(self, operation_id: str) -> Callable[..., Any]:
        group, _, name = operation_id.partition(".")
        if group not in self._groups:
            raise AttributeError(f"no handler group {group!r} for {operation_id}")
        handler: Callable[..., Any] = getattr(self._groups[group], name)
        return handler
