"""Reject oversized bodies before reading them: by Content-Length, or while streaming."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.api.problems import Problem

# Multipart boundaries and the form's small fields around the image.
MULTIPART_ALLOWANCE = 64 * 1024


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        status_by_path: dict[str, int] | None = None,
        max_by_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Paths that answer a too large body with another status than 413.
        self.status_by_path = status_by_path or {}
        # Paths with a limit of their own (a batch's many images).
        self.max_by_path = max_by_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_by_path.get(str(scope.get("path", "")), self.max_body_bytes)
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise Problem(400, "Content-Length is not a number") from None
            if declared > limit:
                raise self._too_large(declared, limit, scope)
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large(received, limit, scope)
            return message

        await self.app(scope, counting_receive, send)

    def _too_large(self, size: int, limit: int, scope: Scope) -> Problem:
        return Problem(
            self.status_by_path.get(str(scope.get("path", "")), 413),
            f"the request body has {size} bytes or more; the limit is {limit}",
            "request-too-large",
        )
