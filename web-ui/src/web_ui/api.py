"""A small synchronous client for the public job API, as the page needs it.

Every failure becomes one of three exceptions the page can show as one readable line:
`ApiUnreachable` (nothing answers), `ApiProblem` (an RFC 9457 answer) and `UnexpectedAnswer`.
A 429 (over the rate limit) is sent again after its `Retry-After`, a few times at most: the
service did nothing with the refused request, so even a job submission is safe to resend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

Task = Literal["classification", "object_detection", "describe"]
TERMINAL_STATUSES = frozenset({"DONE", "FAILED", "CANCELLED"})
RATE_LIMIT_RETRIES: Final = 3
MAX_RETRY_AFTER_S: Final = 5.0


class ApiFailure(Exception):
    """Any request that did not get the answer it asked for."""


class ApiUnreachable(ApiFailure):
    def __init__(self, base_url: str, reason: str) -> None:
        self.base_url = base_url
        super().__init__(f"Cannot reach the inference API at {base_url} ({reason}).")


class ApiProblem(ApiFailure):
    """An error answer; `title` and `detail` come from its problem+json body when it has one."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")


class UnexpectedAnswer(ApiFailure):
    """A success answer the page cannot read."""


@dataclass(frozen=True)
class Model:
    name: str
    title: str
    task: Task
    label_count: int | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Model:
        return cls(body["name"], body["title"], body["task"], body.get("label_count"))


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    error: JobError | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        error = body.get("error")
        return cls(
            body["id"],
            body["status"],
            JobError(str(error["code"]), str(error["message"])) if error else None,
        )


@dataclass(frozen=True)
class ImageUpload:
    name: str
    data: bytes
    media_type: str


class InferenceApi:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10.0,
        rate_limit_retries: int = RATE_LIMIT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.rate_limit_retries = rate_limit_retries
        self._sleep = sleep
        headers = {"User-Agent": "cvinference-web-ui/0.1", "Accept": "application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def list_models(self) -> list[Model]:
        body = self._json("GET", "/models")
        try:
            return [Model.from_json(item) for item in body["items"]]
        except (KeyError, TypeError) as exc:
            raise UnexpectedAnswer(f"GET /models: {body!r:.200}") from exc

    def submit(self, model: str, image: ImageUpload, options: dict[str, Any] | None = None) -> Job:
        """Create the job with its image and queue it in one request."""
        form = {"model": model, "name": image.name[:200] or "upload", "execute": "true"}
        if options:
            form["options"] = json.dumps(options)
        files = {"image": (image.name, image.data, image.media_type)}
        return self._job(self._json("POST", "/jobs", data=form, files=files))

    def job(self, job_id: str) -> Job:
        return self._job(self._json("GET", f"/jobs/{job_id}"))

    def result(self, job_id: str) -> dict[str, Any]:
        body = self._json("GET", f"/jobs/{job_id}/result")
        if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
            raise UnexpectedAnswer(f"GET /jobs/{job_id}/result: {body!r:.200}")
        return body

    def _job(self, body: Any) -> Job:
        try:
            return Job.from_json(body)
        except (KeyError, TypeError) as exc:
            raise UnexpectedAnswer(f"not a job: {body!r:.200}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        for _ in range(self.rate_limit_retries):
            if response.status_code != 429:
                break
            self._sleep(retry_after_s(response))
            response = self._request(method, path, **kwargs)
        if not response.is_success:
            raise problem_of(response)
        try:
            return response.json()
        except ValueError as exc:
            raise UnexpectedAnswer(f"{method} {path}: the answer is not JSON") from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise ApiFailure(f"{method} {path}: {type(exc).__name__} {exc}".rstrip()) from exc


def retry_after_s(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (capped); 1 s when it is absent or an HTTP date."""
    try:
        seconds = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def problem_of(response: httpx.Response) -> ApiProblem:
    """The problem+json body as an exception, or one built from whatever came instead."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text.strip()[:300]}
    title = str(body.get("title") or httpx.codes.get_reason_phrase(response.status_code))
    detail = str(body.get("detail") or "") or _first_error(body)
    return ApiProblem(response.status_code, title, detail)


def _first_error(problem: dict[str, Any]) -> str:
    """A validation problem may say what is wrong only in its `errors` list."""
    errors = problem.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        where = errors[0].get("pointer") or errors[0].get("parameter")
        detail = str(errors[0].get("detail", ""))
        return f"{where}: {detail}" if where else detail
    return ""
