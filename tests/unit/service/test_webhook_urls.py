"""The SSRF rules: which URLs the API takes and which addresses the sender connects to."""

from __future__ import annotations

import ipaddress

import pytest

from inference_service.domain.webhook_urls import InvalidWebhookUrl, TargetPolicy, unwrapped

STRICT = TargetPolicy()
LOCAL = TargetPolicy(allow_http=True, allow_loopback=True)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.10.10",  # link-local
        "100.64.0.1",  # CGNAT
        "100.100.100.200",  # Alibaba metadata
        "192.0.0.192",  # Oracle metadata
        "0.0.0.0",
        "224.0.0.1",  # multicast
        "233.252.0.1",  # multicast (MCAST-TEST-NET)
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "198.18.0.1",  # benchmarking
    ],
)
def test_ipv4_outside_the_public_internet_is_refused(address: str) -> None:
    assert STRICT.blocked_because(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "::1",
        "::",
        "fe80::1",  # link-local
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "ff02::1",  # multicast
        "2001:db8::1",  # documentation
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "::ffff:169.254.169.254",  # IPv4-mapped metadata
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
    ],
)
def test_ipv6_outside_the_public_internet_is_refused(address: str) -> None:
    assert STRICT.blocked_because(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert STRICT.blocked_because(ipaddress.ip_address(address)) is None


def test_the_mapped_address_is_checked_as_its_ipv4() -> None:
    assert unwrapped(ipaddress.ip_address("::ffff:127.0.0.1")) == ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_loopback_only_when_the_setting_allows_it(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert STRICT.blocked_because(ip) == "a loopback address"
    assert LOCAL.blocked_because(ip) is None


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "::ffff:192.168.0.1"])
def test_allowing_loopback_allows_nothing_else(address: str) -> None:
    assert LOCAL.blocked_because(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/hook", "scheme must be https"),
        ("ftp://example.com/hook", "scheme must be https"),
        ("https:///hook", "no host"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://example.com/hook#part", "fragment"),
        ("https://10.0.0.7/hook", "private"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:169.254.169.254]/hook", "blocked range"),
        ("https://example.com:99999/hook", "not a URL"),
        ("https://example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_urls_refused_by_the_api(url: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=reason):
        STRICT.check_url(url)


def test_http_and_loopback_urls_when_allowed() -> None:
    assert LOCAL.check_url("http://127.0.0.1:8000/hook?x=1").hostname == "127.0.0.1"
    with pytest.raises(InvalidWebhookUrl, match="private"):
        LOCAL.check_url("http://192.168.1.1/hook")


def test_a_host_name_is_left_for_the_sender_to_resolve() -> None:
    assert STRICT.check_url("https://hooks.example.com/in").hostname == "hooks.example.com"
