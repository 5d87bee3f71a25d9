"""W3C trace context (traceparent), carried as the CloudEvents distributed-tracing extension."""

import re
import secrets
from typing import Final

_TRACEPARENT: Final = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE: Final = "0" * 32


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_traceparent(parent: str | None) -> str:
    """Same trace, new span: what a service passes on after handling `parent`."""
    match = _TRACEPARENT.match(parent or "")
    if match is None or match.group(1) == _INVALID_TRACE:
        return new_traceparent()
    return f"00-{match.group(1)}-{secrets.token_hex(8)}-{match.group(3)}"


def trace_id(traceparent: str | None) -> str | None:
    """The trace a traceparent belongs to; None when it is not a valid one."""
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match and match.group(1) != _INVALID_TRACE else None


class Span:
    """The span one request is handled under, made when first asked for.

    A child of the caller's traceparent when it sent a valid one; otherwise of the trace the
    work continues (`continuing`: a job's own trace), otherwise the first span of a new trace.
    Every event the request raises and its answer carry this one span. `made`: the
    traceparent of the span a tracer already started for the request, used as it is.
    """

    def __init__(self, caller: str | None = None, *, made: str | None = None) -> None:
        self._caller = caller if trace_id(caller) else None
        self._traceparent = made

    def traceparent(self, continuing: str | None = None) -> str:
        if self._traceparent is None:
            self._traceparent = child_traceparent(self._caller or continuing)
        return self._traceparent
