"""One human-readable line per job event, e.g.

    12:00:01.123 Inference job (id: 3f2a9c1e…) completed: DONE Egyptian cat 0.82 (23 ms)

The words come from the event alone (no lookups), so the log reads the same live and replayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final

from rich.text import Text

from inference_common.events import Envelope, EventType

SHORT_ID_LENGTH: Final = 8
STATUS_STYLES: Final = {
    "NEW": "cyan",
    "QUEUED": "blue",
    "RUNNING": "yellow",
    "DONE": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
}
# The names `--type` accepts: the type's verb, as in `job.<verb>.v1`.
TYPE_NAMES: Final = {t.short.split(".")[1]: t for t in EventType}


@dataclass(frozen=True)
class EventLine:
    time: datetime
    job_id: str
    action: str
    status: str | None = None
    detail: str = ""

    def plain(self, tz: tzinfo | None = None, full_ids: bool = False) -> str:
        return self.styled(tz, full_ids).plain

    def styled(self, tz: tzinfo | None = None, full_ids: bool = False) -> Text:
        text = Text(clock(self.time, tz), style="dim")
        text.append(f" Inference job (id: {short_id(self.job_id, full_ids)}) ")
        text.append(self.action, style="bold")
        if self.status is not None:
            text.append(": ")
            text.append(self.status, style=STATUS_STYLES.get(self.status, ""))
            if self.detail:
                text.append(f" {self.detail}")
        elif self.detail:
            text.append(f": {self.detail}")
        return text


def clock(time: datetime, tz: tzinfo | None = None) -> str:
    """`12:00:01.123` in the viewer's time zone (or `tz`)."""
    return time.astimezone(tz).strftime("%H:%M:%S.%f")[:-3]


def short_id(job_id: str, full: bool = False) -> str:
    if full or len(job_id) <= SHORT_ID_LENGTH:
        return job_id
    return job_id[:SHORT_ID_LENGTH] + "…"


def describe(envelope: Envelope) -> EventLine:
    """The line for one event; KeyError/TypeError/ValueError when its data breaks the contract."""
    action, status, detail = _DESCRIBERS[envelope.type](envelope.data)
    return EventLine(envelope.time, envelope.subject, action, status, detail)


def describe_result(result: dict[str, Any]) -> str:
    """`Egyptian cat 0.82` for a classification, `detected 3 person, 2 kite` for detections,
    the sentence for a description."""
    if result.get("task") == "describe":
        return str(result["description"])
    if result.get("task") == "object_detection" or "detections" in result:
        counts = Counter(str(d["label"]) for d in result["detections"])
        if not counts:
            return "detected nothing"
        return "detected " + ", ".join(f"{n} {label}" for label, n in counts.most_common())
    classes = result["classes"]
    if not classes:
        return "no class"
    best = classes[0]
    return f"{best['label']} {float(best['score']):.2f}"


def elapsed_ms(timings: dict[str, Any]) -> float:
    """The executor's total (`total_ms`, or `total`) when it reports one, else its steps' sum."""
    for key in ("total_ms", "total"):
        if key in timings:
            return float(timings[key])
    return float(sum(float(v) for v in timings.values()))


Describer = Callable[[dict[str, Any]], tuple[str, str | None, str]]


def _created(data: dict[str, Any]) -> tuple[str, str | None, str]:
    return "created", str(data["status"]), f"[model {data['model']}]"


def _execution_requested(data: dict[str, Any]) -> tuple[str, str | None, str]:
    return "execution requested", "QUEUED", f"(attempt {data['attempt']})"


def _started(data: dict[str, Any]) -> tuple[str, str | None, str]:
    return "started", "RUNNING", f"on {data['executor']}{_retry_suffix(data)}"


def _completed(data: dict[str, Any]) -> tuple[str, str | None, str]:
    took = f" ({elapsed_ms(data['timings']):.0f} ms)" if data.get("timings") else ""
    return "completed", "DONE", f"{describe_result(data['result'])}{took}{_retry_suffix(data)}"


def _failed(data: dict[str, Any]) -> tuple[str, str | None, str]:
    error = data["error"]
    reason = f"{error['code']}: {error['message']}"
    if error.get("retryable"):
        # The job service may run it again, so the job is not FAILED (yet).
        return "failed", None, f"{reason} (attempt {data['attempt']}, retryable)"
    return "failed", "FAILED", reason


def _cancelled(data: dict[str, Any]) -> tuple[str, str | None, str]:
    reason = data.get("reason")
    return "cancelled", "CANCELLED", f"({reason})" if reason else ""


def _deleted(data: dict[str, Any]) -> tuple[str, str | None, str]:
    return "deleted", None, ""


def _purged(data: dict[str, Any]) -> tuple[str, str | None, str]:
    # Retention removed stored content of a finished job; its status is unchanged.
    return "purged", None, f"{' and '.join(data['removed'])} removed"


def _retry_suffix(data: dict[str, Any]) -> str:
    attempt = int(data.get("attempt") or 1)
    return f" (attempt {attempt})" if attempt > 1 else ""


_DESCRIBERS: Final[dict[EventType, Describer]] = {
    EventType.CREATED: _created,
    EventType.EXECUTION_REQUESTED: _execution_requested,
    EventType.STARTED: _started,
    EventType.COMPLETED: _completed,
    EventType.FAILED: _failed,
    EventType.CANCELLED: _cancelled,
    EventType.DELETED: _deleted,
    EventType.PURGED: _purged,
}


def warning_line(time: datetime, where: str, reason: str, tz: tzinfo | None = None) -> Text:
    """For a message that is not one of our events: shown, never fatal."""
    text = Text(clock(time, tz), style="dim")
    text.append(" warning: ", style="bold yellow")
    text.append(f"skipped {where}: {reason}", style="yellow")
    return text
