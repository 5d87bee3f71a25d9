"""The request-rate limit: token buckets on an injected clock, and who counts as a client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inference_service.api.problems import Problem
from inference_service.api.ratelimit import RateLimiter, RateLimitMiddleware, retry_after
from tests.unit.service.builders import discard, no_body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_steady_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes back in 1/2 s
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25)  # refused requests spend nothing
    clock.now += 0.25
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_the_bucket_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=5, clock=clock)
    for _ in range(5):
        limiter.take("a")
    clock.now += 3600
    assert [limiter.take("a") for _ in range(6)].count(0.0) == 5


def test_clients_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_a_clock_that_goes_back_adds_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    limiter.take("a")
    clock.now -= 10
    assert limiter.take("a") > 0


def test_the_least_recently_seen_client_is_forgotten_first() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock(), max_clients=2)
    limiter.take("a")
    limiter.take("b")
    limiter.take("a")  # a is now the most recent
    limiter.take("c")  # b goes
    assert limiter.take("b") == 0.0  # a fresh bucket
    assert limiter.take("c") > 0


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after(0.001) == 1
    assert retry_after(1.0) == 1
    assert retry_after(1.2) == 2


def test_a_rate_limit_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)


async def _ok(scope, receive, send) -> None:
    scope["reached"] = True


def _scope(path: str, address: str = "10.0.0.1", key: str | None = None) -> dict[str, Any]:
    headers = [(b"x-api-key", key.encode())] if key else []
    return {"type": "http", "path": path, "client": (address, 5555), "headers": headers}


def call(limit: RateLimitMiddleware, scope: dict[str, Any]) -> None:
    asyncio.run(limit(scope, no_body, discard))


def middleware(keys: dict[str, str] | None = None) -> RateLimitMiddleware:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    return RateLimitMiddleware(_ok, limiter, keys or {}, "/api")


def test_the_key_owner_is_the_client_whatever_the_address() -> None:
    limit = middleware({"k1": "alice", "k2": "bob"})
    call(limit, _scope("/api/jobs", "10.0.0.1", "k1"))
    with pytest.raises(Problem) as refused:
        call(limit, _scope("/api/jobs", "10.0.0.2", "k1"))
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": "1"}
    assert refused.value.type == "urn:cvinference:problem:rate-limited"
    # Another key from the same address has its own bucket.
    call(limit, _scope("/api/jobs", "10.0.0.1", "k2"))


def test_without_a_known_key_the_address_is_the_client() -> None:
    limit = middleware({"k1": "alice"})
    assert limit.client_of(_scope("/api/jobs", "10.0.0.1", "wrong")) == "address:10.0.0.1"
    assert limit.client_of(_scope("/api/jobs", "10.0.0.1")) == "address:10.0.0.1"
    assert middleware().client_of(_scope("/api/jobs", "10.0.0.1", "k1")) == "address:10.0.0.1"
    call(limit, _scope("/api/jobs", "10.0.0.1", "wrong"))
    with pytest.raises(Problem):
        call(limit, _scope("/api/jobs", "10.0.0.1"))


def test_health_checks_are_never_limited() -> None:
    limit = middleware()
    for _ in range(5):
        scope = _scope("/healthz")
        call(limit, scope)
        assert scope["reached"]
