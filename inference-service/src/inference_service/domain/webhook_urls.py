"""Which URLs and addresses a webhook may target: the SSRF rules, with no I/O.

A URL is checked when the API takes it (its form, and its host when that is an address
literal); the addresses a host name resolves to are checked by the sender when it connects,
and it connects to the address it checked (adapters/webhook_http.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2048

# Named although most are also outside the global range: a reader sees they were meant.
_ALWAYS_BLOCKED: Final = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack metadata
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",  # Oracle Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.64.0.0/10",  # CGNAT (shared address space)
    )
)
_LOOPBACK: Final = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class InvalidWebhookUrl(ValueError):
    """The URL cannot be a webhook target; the message says why."""


@dataclass(frozen=True)
class TargetPolicy:
    """What the service may reach: `https` public addresses only, unless settings widen it
    (loopback and `http` for tests and the demo)."""

    allow_http: bool = False
    allow_loopback: bool = False

    def check_url(self, url: str) -> SplitResult:
        if len(url) > MAX_URL_LENGTH:
            raise InvalidWebhookUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidWebhookUrl(f"not a URL: {exc}") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            raise InvalidWebhookUrl(f"the scheme must be {' or '.join(schemes)}")
        if not parts.hostname:
            raise InvalidWebhookUrl("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise InvalidWebhookUrl("credentials in the URL are not accepted")
        if port == 0:
            raise InvalidWebhookUrl("port 0 cannot be reached")
        if parts.fragment:
            raise InvalidWebhookUrl("a fragment is never sent; leave it out")
        literal = address_literal(parts.hostname)
        if literal is not None:
            self.check_address(literal)
        return parts

    def check_address(self, address: Address) -> None:
        """Raises InvalidWebhookUrl for an address the service must not connect to."""
        reason = self.blocked_because(address)
        if reason is not None:
            raise InvalidWebhookUrl(f"{address} is {reason}")

    def blocked_because(self, address: Address) -> str | None:
        plain = unwrapped(address)
        if self.allow_loopback and any(plain in net for net in _LOOPBACK):
            return None
        for net in _ALWAYS_BLOCKED:
            if plain.version == net.version and plain in net:
                return f"in a blocked range ({net})"
        for kind, is_kind in _KINDS:
            if is_kind(plain):
                return f"a {kind} address"
        return None


# In this order: the first that applies names the reason (loopback is also not global).
_KINDS: Final[tuple[tuple[str, Callable[[Address], bool]], ...]] = (
    ("loopback", lambda a: a.is_loopback),
    ("multicast", lambda a: a.is_multicast),
    ("link-local", lambda a: a.is_link_local),
    ("private", lambda a: a.is_private),
    ("reserved", lambda a: a.is_reserved or a.is_unspecified),
    ("non-global", lambda a: not a.is_global),
)


def unwrapped(address: Address) -> Address:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) or 6to4
    IPv6 address: checked as itself, so ::ffff:127.0.0.1 is loopback."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


def address_literal(host: str) -> Address | None:
    """The address a URL's host spells (brackets already removed by urlsplit), if it is one."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
