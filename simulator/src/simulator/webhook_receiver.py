"""A webhook receiver on loopback for the demo: it verifies each delivery's Standard Webhooks
signature, drops a repeated `webhook-id`, and hands the verified events over."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    event: dict[str, Any]


class WebhookReceiver:
    def __init__(self, secret: str, host: str = "127.0.0.1") -> None:
        self._verifier = Webhook(secret)
        self._host = host
        self._server: asyncio.Server | None = None
        self._seen: set[str] = set()
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self.refused = 0
        self.url = ""

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, self._host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{self._host}:{port}/webhook"
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status = "400 Bad Request"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            headers = _headers(head)
            length = int(headers.get("content-length", "0"))
            if length <= MAX_BODY:
                body = await asyncio.wait_for(reader.readexactly(length), 10)
                status = self._accept(body, headers)
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            pass
        with contextlib.suppress(OSError):
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()

    def _accept(self, body: bytes, headers: dict[str, str]) -> str:
        try:
            event = self._verifier.verify(body, headers)
        except WebhookVerificationError:
            self.refused += 1
            return "401 Unauthorized"
        webhook_id = headers["webhook-id"]
        if webhook_id not in self._seen:  # a repeat is acknowledged, not processed again
            self._seen.add(webhook_id)
            self.deliveries.put_nowait(Delivery(webhook_id, dict(event)))
        return "204 No Content"


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}
