"""The webhook sender against small servers on loopback: it connects only to checked
addresses (the ones it resolved, never resolving twice), follows no redirect, and bounds
time and size. Plus the signature, against the Standard Webhooks spec's example."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from inference_service.adapters.webhook_http import Resolver, SafeWebhookSender
from inference_service.domain.webhook_urls import Address, TargetPolicy
from inference_service.domain.webhooks import signature
from inference_service.ports import Response

Reply = Callable[[bytes], Awaitable[bytes | None]]
LOCAL = TargetPolicy(allow_http=True, allow_loopback=True)


class Server:
    """Keeps each request it reads; answers with what `reply` returns (None: no answer)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        self.requests.append(head + await reader.readexactly(length))
        answer = await self.reply(self.requests[-1])
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def serving(reply: Reply) -> AsyncIterator[Server]:
    server = Server(reply)
    started = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = started.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        started.close()


def answering(status: str, body: bytes = b"", extra: str = "") -> Reply:
    async def reply(_request: bytes) -> bytes:
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        return head.encode() + body

    return reply


def resolving(*addresses: str) -> Resolver:
    async def resolve(_host: str, _port: int) -> list[Address]:
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


def sender(
    policy: TargetPolicy = LOCAL, resolver: Resolver | None = None, read_timeout: float = 2.0
) -> SafeWebhookSender:
    if resolver is None:
        return SafeWebhookSender(
            policy, connect_timeout=2.0, read_timeout=read_timeout, max_response_bytes=4096
        )
    return SafeWebhookSender(
        policy,
        connect_timeout=2.0,
        read_timeout=read_timeout,
        max_response_bytes=4096,
        resolver=resolver,
    )


def post_to(
    reply: Reply, through: SafeWebhookSender, url: str = "http://127.0.0.1:{port}/"
) -> tuple[Response, Server]:
    """Start a server with `reply`, POST `{}` to `url` (its port filled in), stop it."""

    async def scenario() -> tuple[Response, Server]:
        async with serving(reply) as server:
            response = await through.post(
                url.format(port=server.port), b'{"a":1}', {"webhook-id": "msg_1"}
            )
            return response, server

    return asyncio.run(scenario())


def test_posts_to_the_resolved_address_with_the_host_name_kept() -> None:
    # `hooks.test` exists in no DNS: reaching the server proves the connection went to the
    # address that was resolved and checked, not to a second lookup.
    response, server = post_to(
        answering("204 No Content"),
        sender(resolver=resolving("127.0.0.1")),
        "http://hooks.test:{port}/in?x=1",
    )
    assert response.ok and response.status_code == 204
    request = server.requests[0]
    assert request.startswith(b"POST /in?x=1 HTTP/1.1\r\n")
    assert f"host: hooks.test:{server.port}".encode() in request.lower()
    assert b"webhook-id: msg_1" in request
    assert request.endswith(b'{"a":1}')


def test_a_name_resolving_to_a_blocked_address_is_never_connected() -> None:
    strict = TargetPolicy(allow_http=True)  # loopback not allowed
    response, server = post_to(
        answering("200 OK"), sender(strict, resolving("127.0.0.1")), "http://rebind.test:{port}/"
    )
    assert not response.ok and response.status_code is None
    assert "127.0.0.1" in (response.error or "") and "loopback" in (response.error or "")
    assert server.requests == []


def test_one_blocked_address_among_the_answers_refuses_them_all() -> None:
    response, server = post_to(
        answering("200 OK"),
        sender(resolver=resolving("127.0.0.1", "10.0.0.8")),
        "http://mixed.test:{port}/",
    )
    assert "10.0.0.8" in (response.error or "")
    assert server.requests == []


def test_mapped_ipv6_loopback_is_refused_when_loopback_is_not_allowed() -> None:
    strict = TargetPolicy(allow_http=True)
    response, server = post_to(
        answering("200 OK"),
        sender(strict, resolving("::ffff:127.0.0.1")),
        "http://mapped.test:{port}/",
    )
    assert "loopback" in (response.error or "")
    assert server.requests == []


def test_https_only_by_default() -> None:
    response, server = post_to(answering("200 OK"), sender(TargetPolicy()))
    assert "https" in (response.error or "")
    assert server.requests == []


def test_a_redirect_is_not_followed() -> None:
    response, server = post_to(
        answering("302 Found", extra="Location: http://127.0.0.1:9/\r\n"), sender()
    )
    assert response.status_code == 302 and not response.ok
    assert "redirects are not followed" in (response.error or "")
    assert len(server.requests) == 1


def test_an_error_status_is_a_failed_attempt() -> None:
    response, _server = post_to(answering("500 Internal Server Error", b"boom"), sender())
    assert response.status_code == 500 and not response.ok


def test_a_slow_answer_times_out() -> None:
    async def slow(_request: bytes) -> bytes | None:
        await asyncio.sleep(3)
        return None

    response, server = post_to(slow, sender(read_timeout=0.3))
    assert response.status_code is None and "no answer within" in (response.error or "")
    assert len(server.requests) == 1


def test_a_huge_answer_is_cut_at_the_cap() -> None:
    response, _server = post_to(answering("200 OK", b"x" * 1_000_000), sender())
    assert response.status_code == 200  # the status was read; the body was not kept


def test_nothing_listening_is_a_failed_attempt() -> None:
    response = asyncio.run(sender().post("http://127.0.0.1:9/", b"{}", {}))
    assert response.status_code is None and "cannot connect" in (response.error or "")


def test_signature_matches_the_standard_webhooks_example() -> None:
    # The example of the Standard Webhooks specification (and its libraries' tests).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    at = datetime.fromtimestamp(1614265330, UTC)
    body = '{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", at, body) == expected


def test_a_signature_verifies_and_a_changed_body_does_not() -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    at = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature(secret, "msg_2", at, '{"a":1}'),
    }
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"a":2}', headers)
