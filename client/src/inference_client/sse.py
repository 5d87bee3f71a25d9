"""Server-sent events: the line protocol of text/event-stream, parsed as the HTML spec says."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


async def parse_sse(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """One event per blank-line-terminated block; comments (`:` keep-alives) are skipped."""
    event = ""
    data: list[str] = []
    event_id: str | None = None
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), event_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            # The last id persists across events, as a reconnect's Last-Event-ID.
            event_id = value
