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


@dataclass(frozen=True)
class RejectedFile:
    index: int
    name: str
    problem: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """A batch as `GET /batches/{id}` shows it: its files counted by where they are."""

    id: str
    total: int
    counts: dict[str, int]
    progress: float
    finished: bool
    rejected: tuple[RejectedFile, ...] = ()
    model: str = ""

    @property
    def done(self) -> int:
        """Files finished (a job DONE, FAILED or CANCELLED, or a file rejected or deleted)."""
        return sum(self.counts.get(status, 0) for status in BATCH_FINAL_COUNTS)

    @classmethod
    def from_json(cls, body: object) -> Batch:
        if not isinstance(body, dict) or "id" not in body or "counts" not in body:
            raise UnexpectedResponse(f"not a batch: {body!r:.200}")
        try:
            return cls(
                id=str(body["id"]),
                total=int(body["total"]),
                counts={str(k): int(v) for k, v in dict(body["counts"]).items()},
                progress=float(body.get("progress") or 0.0),
                finished=bool(body["finished"]),
                rejected=tuple(
                    RejectedFile(int(r["index"]), str(r["name"]), dict(r.get("problem") or {}))
                    for r in body.get("rejected") or []
                ),
                model=str(body.get("model") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnexpectedResponse(f"not a batch: {body!r:.200}") from exc


BATCH_FINAL_COUNTS: Final = (*TERMINAL_STATUSES, "REJECTED", "DELETED")
