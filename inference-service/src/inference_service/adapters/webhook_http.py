"""The webhook sender: one HTTP/1.1 POST to a target the policy allows, and nothing more.

The host is resolved here, every address it resolves to is checked (domain/webhook_urls.py),
and the connection goes to an address that was checked, with the host name kept for TLS
(SNI and certificate) and `Host`: a DNS answer that changes between the check and the
connect (rebinding) cannot send the request elsewhere. No redirect is followed (a 3xx is a
failed attempt), every step has a timeout, and at most `max_response_bytes` are read.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import SplitResult

import h11

from inference_service.domain.webhook_urls import (
    Address,
    InvalidWebhookUrl,
    TargetPolicy,
    address_literal,
)
from inference_service.ports import Response


class Refused(Exception):
    """The target is not one to connect to (its URL or an address it resolves to)."""


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


# host, port → the addresses it resolves to (tests pass their own).
Resolver = Callable[[str, int], Awaitable[list[Address]]]
USER_AGENT = "cv-inference-webhooks/1"


async def resolve(host: str, port: int) -> list[Address]:
    literal = address_literal(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Verifies the certificate and its host name against the system's CAs, plus the ones
    in `ca_file` (WEBHOOK_CA_FILE: receivers behind a private CA)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


@dataclass(eq=False)
class SafeWebhookSender:
    policy: TargetPolicy
    _: KW_ONLY
    connect_timeout: float
    read_timeout: float
    max_response_bytes: int
    resolver: Resolver = resolve
    tls: ssl.SSLContext = field(default_factory=tls_context)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        try:
            parts = self.policy.check_url(url)
            addresses = await self._checked_addresses(parts.hostname or "", _port(parts))
        except (InvalidWebhookUrl, Refused) as exc:
            return Response(None, str(exc))
        request = h11.Request(
            method="POST",
            target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            headers=[
                ("Host", parts.netloc),
                ("User-Agent", USER_AGENT),
                ("Content-Type", "application/cloudevents+json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *headers.items(),
            ],
        )
        last_error = "no address could be reached"
        for address in addresses:
            try:
                reader, writer = await asyncio.wait_for(
                    self._connect(address, parts), self.connect_timeout
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                last_error = f"cannot connect to {address}: {exc or 'timed out'}"
                continue
            try:
                return await asyncio.wait_for(
                    self._exchange(reader, writer, request, body), self.read_timeout
                )
            except TimeoutError:
                return Response(None, f"no answer within {self.read_timeout} s")
            except (OSError, h11.ProtocolError, ssl.SSLError) as exc:
                return Response(None, f"{type(exc).__name__}: {exc}")
            finally:
                writer.close()
        return Response(None, last_error)

    async def _checked_addresses(self, host: str, port: int) -> list[Address]:
        """Every address the host resolves to, each allowed; all of them, not only the one
        used: a mixed answer is a probe, not an accident."""
        try:
            addresses = await asyncio.wait_for(self.resolver(host, port), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise Refused(f"cannot resolve {host}: {exc or 'timed out'}") from None
        if not addresses:
            raise Refused(f"{host} has no address")
        for address in addresses:
            reason = self.policy.blocked_because(address)
            if reason is not None:
                raise Refused(f"{host} resolves to {address}, {reason}")
        return addresses

    async def _connect(
        self, address: Address, parts: SplitResult
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """To the checked address; TLS still verifies the certificate for the host name."""
        secure = parts.scheme == "https"
        return await asyncio.open_connection(
            str(address),
            _port(parts),
            ssl=self.tls if secure else None,
            server_hostname=parts.hostname if secure else None,
        )

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> Response:
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_response_bytes)
        writer.write(
            connection.send(request)
            + connection.send(h11.Data(data=body))
            + connection.send(h11.EndOfMessage())
        )
        await writer.drain()
        status: int | None = None
        received = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                if received > self.max_response_bytes:
                    break  # the status is all we need: a huge answer is cut, not read
                chunk = await reader.read(16_384)
                received += len(chunk)
                connection.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if status is None:
            return Response(None, "the connection closed without an answer")
        if 300 <= status < 400:
            return Response(status, f"answered {status}: redirects are not followed")
        if not 200 <= status < 300:
            return Response(status, f"answered {status}")
        return Response(status, None)
