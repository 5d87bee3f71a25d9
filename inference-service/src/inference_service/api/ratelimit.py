"""Request-rate limits per client: a token bucket each, in this process, 429 when empty.

The client is the API key's owner when the request carries a known key, otherwise the remote
address (anonymous callers, and unknown keys, which get their 401 only after this). Each
replica of the service keeps its own buckets, so N replicas allow N times the rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from inference_service.api.problems import Problem
from inference_service.api.security import key_checker

# Buckets kept at most; the least recently seen client is forgotten first. A forgotten
# client starts again with a full bucket, which one idle for burst/rate seconds has anyway.
MAX_CLIENTS: Final = 100_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """`rate` requests per second per client on average, up to `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str) -> float:
        """0 when the request may go ahead (a token is spent); else seconds until it may."""
        now = self._clock()
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.at = now
        self._buckets[client] = bucket  # most recently seen last
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after(wait_seconds: float) -> int:
    """Retry-After is whole seconds; never 0, which would invite an immediate retry."""
    return max(1, math.ceil(wait_seconds))


class RateLimitMiddleware:
    """Refuses a request over its client's rate before anything reads its body."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        clients_by_key: Mapping[str, str],
        base_path: str,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self._check_key = key_checker(clients_by_key) if clients_by_key else None
        self._base_path = base_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith(self._base_path):
            await self.app(scope, receive, send)  # health checks are never limited
            return
        client = self.client_of(scope)
        wait = self.limiter.take(client)
        if wait > 0:
            seconds = retry_after(wait)
            raise Problem(
                429,
                f"more than {self.limiter.rate:g} requests per second (bursts of "
                f"{self.limiter.burst}) from this client; retry after {seconds} s",
                "rate-limited",
                headers={"Retry-After": str(seconds)},
            )
        await self.app(scope, receive, send)

    def client_of(self, scope: Scope) -> str:
        if self._check_key is not None:
            key = Headers(scope=scope).get("x-api-key")
            known = self._check_key(key) if key else None
            if known:
                return "key:" + known["sub"]
        address = scope.get("client")
        return "address:" + (str(address[0]) if address else "unknown")
