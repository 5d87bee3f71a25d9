"""What the job API sends and takes, as its clients read it (openapi/ is the contract).

Parsing is lenient on purpose: a field no client uses may come and go without breaking a load
test or the page; the fields they do use are required.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

TERMINAL_STATUSES: Final = frozenset({"DONE", "FAILED", "CANCELLED"})


class UnexpectedResponse(ValueError):
    """A 2xx answer whose body is not the resource the contract promises."""


@dataclass(frozen=True)
class ImageUpload:
    """An image to upload: its file name, bytes and media type."""

    name: str
    data: bytes
    media_type: str


@dataclass(frozen=True)
class Model:
    name: str
    title: str
    task: str
    default_options: dict[str, Any] = field(default_factory=dict)
    label_count: int | None = None

    @classmethod
    def from_json(cls, body: object) -> Model:
        if not isinstance(body, dict):
            raise UnexpectedResponse(f"not a model: {body!r:.200}")
        try:
            return cls(
                name=str(body["name"]),
                title=str(body.get("title", body["name"])),
                task=str(body["task"]),
                default_options=dict(body.get("default_options") or {}),
                label_count=body.get("label_count"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnexpectedResponse(f"not a model: {body!r:.200}") from exc


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    retryable: bool = False

    @classmethod
    def from_json(cls, body: object) -> JobError | None:
        if not isinstance(body, dict):
            return None
        return cls(
            code=str(body.get("code", "unknown")),
            message=str(body.get("message", "")),
            retryable=bool(body.get("retryable", False)),
        )


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    name: str = ""
    model: str = ""
    attempt: int = 0
    error: JobError | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: object) -> Job:
        if not isinstance(body, dict) or "id" not in body or "status" not in body:
            raise UnexpectedResponse(f"not a job: {body!r:.200}")
        return cls(
            id=str(body["id"]),
            status=str(body["status"]),
            name=str(body.get("name") or ""),
            model=str(body.get("model") or ""),
            attempt=int(body.get("attempt") or 0),
            error=JobError.from_json(body.get("error")),
        )
