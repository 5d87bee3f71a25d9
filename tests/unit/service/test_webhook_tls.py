"""The sender's `https` path against a TLS server on loopback, with a throwaway CA (trustme):
the certificate and its host name are verified, SNI carries the host name, and the
connection goes to the checked address, not to a second lookup of the name."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inference_service.adapters.webhook_http import SafeWebhookSender, tls_context
from inference_service.domain.webhook_urls import Address, TargetPolicy
from inference_service.ports import Response

HOST = "hooks.test"  # in no DNS: only the sender's resolver knows it
# Not 127.0.0.1: a server listening only here proves the connection went to this address.
CHECKED = "127.0.0.2"
# https only (http not allowed); loopback allowed for the server in the test.
POLICY = TargetPolicy(allow_http=False, allow_loopback=True)


class TlsServer:
    """Answers 204 to each request; keeps what it saw: the SNI name, the local address the
    client reached, and the request head."""

    def __init__(self) -> None:
        self.server_names: list[str | None] = []
        self.reached: list[str] = []
        self.requests: list[bytes] = []
        self.port = 0

    def context(self, certificate: trustme.LeafCert | tuple[bytes, bytes]) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if isinstance(certificate, trustme.LeafCert):
            certificate.configure_cert(context)
        else:
            with certificate_files(*certificate) as (cert, key):
                context.load_cert_chain(cert, key)

        def sni(_socket: ssl.SSLObject, name: str, _context: ssl.SSLContext) -> None:
            self.server_names.append(name)  # None when the client sent no SNI

        context.sni_callback = sni
        return context

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reached.append(writer.get_extra_info("sockname")[0])
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()


@contextlib.contextmanager
def certificate_files(cert: bytes, key: bytes) -> Iterator[tuple[Path, Path]]:
    with trustme.Blob(cert).tempfile() as cert_file, trustme.Blob(key).tempfile() as key_file:
        yield Path(cert_file), Path(key_file)


@contextlib.asynccontextmanager
async def serving(
    certificate: trustme.LeafCert | tuple[bytes, bytes],
) -> AsyncIterator[TlsServer]:
    server = TlsServer()
    started = await asyncio.start_server(server.handle, CHECKED, 0, ssl=server.context(certificate))
    server.port = started.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        started.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.contextmanager
def sender_trusting(
    ca: trustme.CA | None, looked_up: list[str] | None = None
) -> Iterator[SafeWebhookSender]:
    """A sender resolving every name to CHECKED (noted in `looked_up`), trusting `ca` the
    way a deployment does (WEBHOOK_CA_FILE: tls_context), or with None the system's CAs."""

    async def resolve(host: str, _port: int) -> list[Address]:
        if looked_up is not None:
            looked_up.append(host)
        return [ipaddress.ip_address(CHECKED)]

    with contextlib.ExitStack() as files:
        ca_file = None if ca is None else Path(files.enter_context(ca.cert_pem.tempfile()))
        yield SafeWebhookSender(
            POLICY,
            connect_timeout=2.0,
            read_timeout=2.0,
            max_response_bytes=4096,
            resolver=resolve,
            tls=tls_context(ca_file),
        )


@pytest.fixture(scope="module")
def trusting(ca: trustme.CA) -> Iterator[SafeWebhookSender]:
    with sender_trusting(ca) as sender:
        yield sender


def post(
    sender: SafeWebhookSender, certificate: trustme.LeafCert | tuple[bytes, bytes]
) -> tuple[Response, TlsServer]:
    async def scenario() -> tuple[Response, TlsServer]:
        async with serving(certificate) as server:
            url = f"https://{HOST}:{server.port}/in"
            return await sender.post(url, b'{"a":1}', {"webhook-id": "msg_1"}), server

    return asyncio.run(scenario())


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A certificate for `name` signed by its own key: right name, no trusted issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def test_https_to_the_checked_address_with_sni_and_host_for_the_name(
    ca: trustme.CA, trusting: SafeWebhookSender
) -> None:
    response, server = post(trusting, ca.issue_cert(HOST))
    assert response.ok and response.status_code == 204, response.error
    assert server.reached == [CHECKED]
    assert server.server_names == [HOST]
    (request,) = server.requests
    assert request.startswith(b"POST /in HTTP/1.1\r\n")
    assert f"host: {HOST}:{server.port}".encode() in request.lower()


def test_a_certificate_for_another_name_is_refused(
    ca: trustme.CA, trusting: SafeWebhookSender
) -> None:
    response, server = post(trusting, ca.issue_cert("other.test"))
    assert response.status_code is None and not response.ok
    error = response.error or ""
    assert f"cannot connect to {CHECKED}" in error
    assert "certificate verify failed" in error and "Hostname mismatch" in error
    assert server.requests == []  # the handshake failed: nothing was sent


def test_a_self_signed_certificate_is_refused(trusting: SafeWebhookSender) -> None:
    response, server = post(trusting, self_signed(HOST))
    error = response.error or ""
    assert response.status_code is None and "certificate verify failed" in error
    assert "self-signed certificate" in error or "self signed certificate" in error
    assert server.requests == []


def test_a_certificate_from_another_ca_is_refused(trusting: SafeWebhookSender) -> None:
    response, server = post(trusting, trustme.CA().issue_cert(HOST))
    error = response.error or ""
    assert response.status_code is None and "certificate verify failed" in error
    assert "unable to get local issuer certificate" in error
    assert server.requests == []


def test_without_the_ca_file_the_test_ca_is_not_trusted(ca: trustme.CA) -> None:
    with sender_trusting(None) as system_only:
        response, server = post(system_only, ca.issue_cert(HOST))
    assert "certificate verify failed" in (response.error or "")
    assert server.requests == []


def test_an_international_name_goes_out_in_its_ascii_form(ca: trustme.CA) -> None:
    # SNI, the certificate check, the lookup and `Host` all use the IDNA (A-label) form:
    # the name as typed cannot be written into a header or a ClientHello.
    looked_up: list[str] = []

    async def scenario(sender: SafeWebhookSender) -> tuple[Response, TlsServer]:
        async with serving(ca.issue_cert("xn--bcher-kva.test")) as server:
            url = f"https://bücher.test:{server.port}/in"
            return await sender.post(url, b"{}", {}), server

    with sender_trusting(ca, looked_up) as sender:
        response, server = asyncio.run(scenario(sender))
    assert response.ok, response.error
    assert looked_up == ["xn--bcher-kva.test"]
    assert server.server_names == ["xn--bcher-kva.test"]
    assert f"host: xn--bcher-kva.test:{server.port}".encode() in server.requests[0].lower()
