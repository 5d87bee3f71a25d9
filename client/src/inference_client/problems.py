"""Failures of a request, each readable as one line: RFC 9457 problems become `ApiError`."""

from __future__ import annotations

import json
from typing import Any

import httpx


class ApiFailure(Exception):
    """Any request that did not get the answer it asked for; `kind` groups them in reports."""

    kind: str = "error"


class ApiUnreachable(ApiFailure):
    """Nothing answers at the base URL: wrong address, or the service is down."""

    kind = "unreachable"

    def __init__(self, base_url: str, reason: str) -> None:
        self.base_url = base_url
        self.reason = reason
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


def transport_failure(
    base_url: str, method: str, path: str, exc: httpx.TransportError
) -> ApiFailure:
    """No connection at all is `ApiUnreachable`; a connection that broke, a transport error."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ApiUnreachable(base_url, str(exc).strip() or type(exc).__name__)
    return ApiTransportError(method, path, exc)


def problem_name(problem_type: str, title: str) -> str:
    """The last segment of a problem type URI; the title when the type is `about:blank`."""
    if problem_type in ("", "about:blank"):
        return title
    return problem_type.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] or problem_type


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


def _first_error(problem: dict[str, Any]) -> str:
    """A validation problem may say what is wrong only in its `errors` list."""
    errors = problem.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        where = errors[0].get("pointer") or errors[0].get("parameter")
        detail = str(errors[0].get("detail", ""))
        return f"{where}: {detail}" if where else detail
    return ""
