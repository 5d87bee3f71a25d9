"""An async client for the job API: typed answers, RFC 9457 problems as exceptions, and retries
that ride out a restart of the job service (`retrying` says which and how long).

The simulator uses it as it is; the web UI runs it on an event loop of its own per page run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Final

import httpx

from inference_client.problems import (
    ApiError,
    ApiFailure,
    problem_of,
    transport_failure,
)
from inference_client.resources import Batch, ImageUpload, Job, Model, UnexpectedResponse
from inference_client.retrying import (
    RetryNotice,
    RetryPolicy,
    ignore_notice,
    may_retry,
    trouble_of,
)
from inference_client.sse import ServerSentEvent, parse_sse

# The image media types POST /jobs takes as a raw body (openapi/inference-api.yaml); any
# other goes as bytes, and the service tells the format by its content.
RAW_MEDIA_TYPES: Final = frozenset(
    {"image/jpeg", "image/png", "image/bmp", "image/gif", "image/webp", "image/tiff"}
)
_OCTETS: Final = "application/octet-stream"


class InferenceClient:
    """One per run (or page run). `retries` counts the repeated attempts by what went wrong;
    `on_retry` hears of each wait and of the service answering again."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        policy: RetryPolicy | None = None,
        on_retry: Callable[[RetryNotice], None] = ignore_notice,
        user_agent: str = "cvinference-client/0.1",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        # pool=None: under load a request waits for a free connection instead of failing.
        common: dict[str, Any] = {"base_url": self.base_url, "headers": headers}
        self._http = httpx.AsyncClient(
            **common,
            transport=transport,
            timeout=httpx.Timeout(timeout_s, pool=None),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )
        # The event stream stays open for the whole run, so it gets its own connection.
        self._stream_http = httpx.AsyncClient(
            **common, transport=transport, timeout=httpx.Timeout(timeout_s, read=None)
        )
        self.policy = policy or RetryPolicy()
        self.on_retry = on_retry
        self.retries: Counter[str] = Counter()
        self._sleep = sleep
        self._clock = clock
        self._answered = False  # has the service ever answered this client?
        self._failing_since: float | None = None  # the start of the current spell of retries

    async def __aenter__(self) -> InferenceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._stream_http.aclose()

    async def list_models(self) -> list[Model]:
        body = await self._json("GET", "/models", idempotent=True)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UnexpectedResponse(f"GET /models: no items in {body!r:.200}")
        return [Model.from_json(item) for item in items]

    async def create_job(
        self,
        image: ImageUpload,
        *,
        name: str,
        model: str,
        idempotency_key: str,
        options: dict[str, Any] | None = None,
        execute: bool = True,
        callback: dict[str, str] | None = None,
    ) -> Job:
        """The key makes the create safe to repeat: give each new job a new one. `callback`:
        `{"url", "events"}`, where the job's events are POSTed (signed, docs/api.md).

        The image goes as the raw body, the fields as query parameters: no form to build on
        this side or to parse on the service's. A callback, an object, needs the form."""
        headers = {"Idempotency-Key": idempotency_key}
        if callback:
            form = {"name": name, "model": model, "execute": _flag(execute)}
            form["callback"] = json.dumps(callback)
            if options:
                form["options"] = json.dumps(options)
            files = {"image": (image.name, image.data, image.media_type)}
            body = await self._json(
                "POST", "/jobs", idempotent=True, data=form, files=files, headers=headers
            )
            return Job.from_json(body)
        params: dict[str, str] = {"name": name, "model": model, "execute": _flag(execute)}
        for option, value in (options or {}).items():
            params[option] = _flag(value) if isinstance(value, bool) else str(value)
        media_type = image.media_type if image.media_type in RAW_MEDIA_TYPES else _OCTETS
        body = await self._json(
            "POST",
            "/jobs",
            idempotent=True,
            params=params,
            content=image.data,
            headers={**headers, "Content-Type": media_type},
        )
        return Job.from_json(body)

    async def get_job(self, job_id: str, wait_s: float = 0.0) -> Job:
        """`wait_s`: the server's long poll, answering once the job is finished or after that."""
        params = {"wait": f"{wait_s:g}"} if wait_s > 0 else None
        body = await self._json("GET", f"/jobs/{job_id}", idempotent=True, params=params)
        return Job.from_json(body)

    async def execute_job(self, job_id: str) -> Job | None:
        return _job_or_none(await self._json("POST", f"/jobs/{job_id}/execution"))

    async def cancel_job(self, job_id: str, reason: str | None = None) -> Job | None:
        body = {"reason": reason} if reason else None
        return _job_or_none(await self._json("POST", f"/jobs/{job_id}/cancellation", json=body))

    async def delete_job(self, job_id: str) -> None:
        await self._request("DELETE", f"/jobs/{job_id}")

    async def webhook_secret(self) -> str:
        """The secret that signs this client's job callbacks."""
        body = await self._json("GET", "/webhook-secret", idempotent=True)
        if not isinstance(body, dict) or not isinstance(body.get("secret"), str):
            raise UnexpectedResponse(f"GET /webhook-secret: {body!r:.200}")
        return str(body["secret"])

    async def job_deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook deliveries, each with its attempts."""
        body = await self._json("GET", f"/jobs/{job_id}/deliveries", idempotent=True)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise UnexpectedResponse(f"GET /jobs/{job_id}/deliveries: {body!r:.200}")
        return list(body["items"])

    async def get_result(self, job_id: str) -> dict[str, Any]:
        """The result body: `{"job_id", "model", "result": {...}, ...}`."""
        body = await self._json("GET", f"/jobs/{job_id}/result", idempotent=True)
        if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
            raise UnexpectedResponse(f"GET /jobs/{job_id}/result: {body!r:.200}")
        return body

    # --- batches ---

    async def create_batch(
        self,
        images: list[ImageUpload],
        *,
        model: str,
        idempotency_key: str,
        options: dict[str, Any] | None = None,
        archive: ImageUpload | None = None,
    ) -> Batch:
        """Many images as one batch (or one zip or tar `archive`); each becomes a job named
        after its file. The key makes the whole upload safe to repeat."""
        form = {"model": model}
        if options:
            form["options"] = json.dumps(options)
        if archive is not None:
            files = [("archive", (archive.name, archive.data, archive.media_type))]
        else:
            files = [("files", (image.name, image.data, image.media_type)) for image in images]
        body = await self._json(
            "POST",
            "/batches",
            idempotent=True,
            data=form,
            files=files,
            headers={"Idempotency-Key": idempotency_key},
        )
        return Batch.from_json(body)

    async def get_batch(self, batch_id: str) -> Batch:
        return Batch.from_json(await self._json("GET", f"/batches/{batch_id}", idempotent=True))

    async def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        """The finished batch's JSON Lines, one dict per file in upload order; an ApiError
        409 (`batch-not-finished`) before."""
        response = await self._request("GET", f"/batches/{batch_id}/results", idempotent=True)
        lines = []
        for line in response.text.splitlines():
            try:
                lines.append(dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise UnexpectedResponse(f"a results line is not JSON: {line!r:.200}") from exc
        return lines

    async def cancel_batch(self, batch_id: str, reason: str | None = None) -> Batch:
        body = {"reason": reason} if reason else None
        path = f"/batches/{batch_id}/cancellation"
        return Batch.from_json(await self._json("POST", path, json=body))

    async def delete_batch(self, batch_id: str) -> None:
        await self._request("DELETE", f"/batches/{batch_id}")

    async def events(
        self, path: str = "/events", on_open: Callable[[], None] | None = None
    ) -> AsyncIterator[ServerSentEvent]:
        """The server-sent event stream; `on_open` runs once the server has accepted it. Not
        retried here: a caller that follows it reconnects at its own pace."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            async with self._stream_http.stream("GET", path, headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise ApiError("GET", path, response.status_code, problem_of(response))
                if on_open is not None:
                    on_open()
                async for event in parse_sse(response.aiter_lines()):
                    yield event
        except httpx.TransportError as exc:
            raise transport_failure(self.base_url, "GET", path, exc) from exc

    async def _json(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> Any:
        response = await self._request(method, path, idempotent=idempotent, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UnexpectedResponse(f"{method} {path}: answer is not JSON") from exc

    async def _request(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """`idempotent`: safe to send again whatever became of an earlier attempt."""
        first_sent = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                failure = transport_failure(self.base_url, method, path, exc)
                if not await self._may_wait(failure, idempotent, attempt, first_sent, None):
                    raise failure from exc
                continue
            self._answered = True
            if response.is_success:
                self._answered_again()
                return response
            error = ApiError(method, path, response.status_code, problem_of(response))
            retry_after = response.headers.get("Retry-After")
            if not await self._may_wait(error, idempotent, attempt, first_sent, retry_after):
                self._answered_again()
                raise error

    async def _may_wait(
        self,
        failure: ApiFailure,
        idempotent: bool,
        attempt: int,
        first_sent: float,
        retry_after: str | None,
    ) -> bool:
        """Waits before the next attempt and says so; False when this one was the last."""
        if not may_retry(failure, idempotent):
            return False
        delay = self.policy.delay_s(attempt, retry_after)
        budget = self.policy.ride_out_s if self._answered else self.policy.first_contact_s
        now = self._clock()
        if now + delay - first_sent > budget:
            return False
        if self._failing_since is None:
            self._failing_since = now
        self.retries[
            f"HTTP {failure.status}" if isinstance(failure, ApiError) else failure.kind
        ] += 1
        self.on_retry(RetryNotice(trouble_of(failure), now - self._failing_since, delay))
        await self._sleep(delay)
        return True

    def _answered_again(self) -> None:
        """An answer after a spell of retries ends the spell, and the caller hears of it."""
        if self._failing_since is not None:
            outage_s = self._clock() - self._failing_since
            self._failing_since = None
            self.on_retry(RetryNotice("", outage_s))


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _job_or_none(body: Any) -> Job | None:
    return Job.from_json(body) if isinstance(body, dict) and "status" in body else None
