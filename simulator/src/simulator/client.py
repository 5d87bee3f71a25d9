"""An async client for the job API: typed answers, RFC 9457 problems as exceptions, safe retries.

Only requests that are safe to repeat are retried: reads, and job creation, which carries an
`Idempotency-Key` so a retry after a lost answer cannot create a second job. A 429 (over the
rate limit) is retried for every request, after its `Retry-After`: nothing was done.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Final

import httpx

from simulator.resources import ImageSample, Job, ModelInfo, UnexpectedResponse
from simulator.sse import ServerSentEvent, parse_sse

RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S: Final = 5.0


class ApiFailure(Exception):
    """Any request that did not get the answer it asked for; `kind` groups them in reports."""

    kind: str = "error"


class ApiUnreachable(ApiFailure):
    """Nothing answers at the base URL: wrong address, or the service is down."""

    kind = "unreachable"

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(f"cannot reach the inference API at {base_url}: {reason}")


class ApiTransportError(ApiFailure):
    """The connection was made but broke or timed out mid-request."""

    def __init__(self, method: str, path: str, exc: httpx.TransportError) -> None:
        self.kind = f"transport {type(exc).__name__}"
        super().__init__(f"{method} {path}: {type(exc).__name__} {exc}".rstrip())


class ApiError(ApiFailure):
    """An error answer; `problem` is its RFC 9457 body (or a stand-in for a non-problem body)."""

    def __init__(self, method: str, path: str, status: int, problem: dict[str, Any]) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type") or "about:blank")
        self.title = str(problem.get("title") or httpx.codes.get_reason_phrase(status))
        self.detail = str(problem.get("detail") or "") or _first_error(problem)
        self.kind = f"HTTP {status} {problem_name(self.type, self.title)}"
        message = f"{method} {path}: {status} {self.title}"
        super().__init__(f"{message}: {self.detail}" if self.detail else message)


def problem_name(problem_type: str, title: str) -> str:
    """The last segment of a problem type URI; the title when the type is `about:blank`."""
    if problem_type in ("", "about:blank"):
        return title
    return problem_type.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] or problem_type


def _first_error(problem: dict[str, Any]) -> str:
    """A validation problem may say what is wrong only in its `errors` list."""
    errors = problem.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        where = errors[0].get("pointer") or errors[0].get("parameter")
        detail = str(errors[0].get("detail", ""))
        return f"{where}: {detail}" if where else detail
    return ""


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body, or one built from whatever the server sent instead."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        return body
    text = response.text.strip()
    return {"detail": text[:300]} if text else {}


class InferenceClient:
    """One per run. `retries` counts the repeated attempts by what went wrong."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "cvinference-simulator/0.1", "Accept": "application/json"}
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
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        # Bounds one wait, so that many attempts (riding out a restart) keep retrying briskly.
        self.max_backoff_s = max_backoff_s
        self.retries: Counter[str] = Counter()

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

    async def list_models(self) -> list[ModelInfo]:
        body = await self._json("GET", "/models", retry=True)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UnexpectedResponse(f"GET /models: no items in {body!r:.200}")
        return [ModelInfo.from_json(item) for item in items]

    async def create_job(
        self,
        image: ImageSample,
        *,
        name: str,
        model: str,
        idempotency_key: str,
        options: dict[str, Any] | None = None,
        execute: bool = True,
    ) -> Job:
        form = {"name": name, "model": model, "execute": "true" if execute else "false"}
        if options:
            form["options"] = json.dumps(options)
        body = await self._json(
            "POST",
            "/jobs",
            retry=True,
            # Another attempt of ours (one whose answer was lost) still holds the key: the
            # service tells it apart and says so; waiting for it is the whole point of a key.
            retry_statuses=RETRY_STATUSES | {409},
            data=form,
            files={"image": (image.name, image.data, image.media_type)},
            headers={"Idempotency-Key": idempotency_key},
        )
        return Job.from_json(body)

    async def get_job(self, job_id: str, wait_s: float = 0.0) -> Job:
        """`wait_s`: the server's long poll, answering once the job is finished or after that."""
        params = {"wait": f"{wait_s:g}"} if wait_s > 0 else None
        return Job.from_json(await self._json("GET", f"/jobs/{job_id}", retry=True, params=params))

    async def execute_job(self, job_id: str) -> Job | None:
        return _job_or_none(await self._json("POST", f"/jobs/{job_id}/execution", retry=False))

    async def cancel_job(self, job_id: str, reason: str | None = None) -> Job | None:
        body = {"reason": reason} if reason else None
        path = f"/jobs/{job_id}/cancellation"
        return _job_or_none(await self._json("POST", path, retry=False, json=body))

    async def delete_job(self, job_id: str) -> None:
        await self._request("DELETE", f"/jobs/{job_id}", retry=False)

    async def get_result(self, job_id: str) -> dict[str, Any]:
        body = await self._json("GET", f"/jobs/{job_id}/result", retry=True)
        if not isinstance(body, dict):
            raise UnexpectedResponse(f"GET /jobs/{job_id}/result: {body!r:.200}")
        return body

    async def events(
        self, path: str = "/events", on_open: Callable[[], None] | None = None
    ) -> AsyncIterator[ServerSentEvent]:
        """The server-sent event stream; `on_open` runs once the server has accepted it."""
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
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ApiUnreachable(self.base_url, _reason(exc)) from exc
        except httpx.TransportError as exc:
            raise ApiTransportError("GET", path, exc) from exc

    async def _json(self, method: str, path: str, *, retry: bool, **kwargs: Any) -> Any:
        response = await self._request(method, path, retry=retry, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UnexpectedResponse(f"{method} {path}: answer is not JSON") from exc

    async def _request(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        **kwargs: Any,
    ) -> httpx.Response:
        """`retry`: the request is safe to repeat. A 429 is always retried (bounded): the
        service refused it before doing anything, so even a state change is safe to resend."""
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts or not retry
            try:
                response = await self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise ApiUnreachable(self.base_url, _reason(exc)) from exc
                self.retries["unreachable"] += 1
                await asyncio.sleep(self._backoff(attempt))
                continue
            except httpx.TransportError as exc:
                if last:
                    raise ApiTransportError(method, path, exc) from exc
                self.retries[f"transport {type(exc).__name__}"] += 1
                await asyncio.sleep(self._backoff(attempt))
                continue
            if response.is_success:
                return response
            status = response.status_code
            rate_limited = status == 429 and attempt < self.max_attempts
            if (last and not rate_limited) or not _retryable(response, retry_statuses):
                raise ApiError(method, path, status, problem_of(response))
            self.retries[f"HTTP {status}"] += 1
            await asyncio.sleep(self._backoff(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        # Full jitter, so many simulated clients do not retry in lockstep.
        ceiling = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        return float(random.uniform(0, ceiling))


def _retryable(response: httpx.Response, statuses: frozenset[int]) -> bool:
    if response.status_code not in statuses:
        return False
    if response.status_code != 409:
        return True
    # Only this conflict passes; any other 409 (a state that forbids the request) is final.
    return str(problem_of(response).get("type", "")).endswith(":idempotency-key-in-progress")


def _job_or_none(body: Any) -> Job | None:
    return Job.from_json(body) if isinstance(body, dict) and "status" in body else None


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
