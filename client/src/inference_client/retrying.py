"""When a request is sent again, how long to wait, and what the caller is told meanwhile.

A request is repeated only when that is safe: reads, and job creation, which carries an
`Idempotency-Key` so that a retry after a lost answer cannot create a second job. Any request
is repeated when the service cannot have seen it (no connection) or refused it before doing
anything (429). A restart of the job service (seconds, a minute at worst) is ridden out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from inference_client.problems import ApiError, ApiFailure, ApiUnreachable

IDEMPOTENCY_KEY_IN_PROGRESS: Final = ":idempotency-key-in-progress"
UNAVAILABLE_STATUSES: Final = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request keeps trying, and how long it waits between attempts.

    `ride_out_s` bounds the retries of one request once the service has answered this client;
    before its first answer `first_contact_s` does, so that a wrong address fails fast. Waits
    grow from `backoff_s`, doubling up to `max_backoff_s`, with full jitter so that many clients
    do not retry in lockstep; a `Retry-After` (429, 503) is honoured, up to `max_retry_after_s`.
    Waits of at most 1 s: a restarted service is found half a second after it answers, on
    average (a refused connection costs it nothing meanwhile).
    """

    ride_out_s: float = 90.0
    first_contact_s: float = 5.0
    backoff_s: float = 0.25
    max_backoff_s: float = 1.0
    max_retry_after_s: float = 30.0

    def delay_s(
        self,
        attempt: int,
        retry_after: str | None = None,
        draw: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """The wait after failed attempt number `attempt` (1 for the first)."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_retry_after_s)
            except ValueError:
                pass  # an HTTP date: our own backoff instead
        ceiling = min(self.backoff_s * 2 ** min(attempt - 1, 30), self.max_backoff_s)
        return draw(0.0, ceiling)


def may_retry(failure: ApiFailure, idempotent: bool) -> bool:
    """Whether sending the request again is safe and may help; `idempotent`: a read, or a
    create under its Idempotency-Key."""
    if isinstance(failure, ApiUnreachable):
        return True  # the request never reached the service
    if not isinstance(failure, ApiError):
        return idempotent  # the connection broke mid-request: the service may have acted
    if failure.status == 429:
        return True
    if not idempotent:
        return False
    # Another attempt of ours (one whose answer was lost) still holds the key: the service
    # tells it apart and says so; waiting for it is the whole point of a key. Any other 409
    # (a state that forbids the request) is final.
    in_progress = failure.status == 409 and failure.type.endswith(IDEMPOTENCY_KEY_IN_PROGRESS)
    return in_progress or failure.status in UNAVAILABLE_STATUSES


@dataclass(frozen=True)
class RetryNotice:
    """What the client tells its caller while the service does not answer as asked.

    `trouble` says what goes wrong ("" once the service answers again); `outage_s` is the time
    since the first failure of this spell; `delay_s` the wait before the next attempt.
    """

    trouble: str
    outage_s: float
    delay_s: float = 0.0

    @property
    def recovered(self) -> bool:
        return not self.trouble

    def describe(self) -> str:
        if self.recovered:
            return f"job service answers again after {self.outage_s:.0f} s"
        return f"{self.trouble}, retrying ({self.outage_s:.0f} s)"


def trouble_of(failure: ApiFailure) -> str:
    if not isinstance(failure, ApiError):
        return "job service unreachable"
    if failure.status == 429:
        return "rate limited (HTTP 429)"
    if failure.status == 409:
        return "an earlier attempt still holds the idempotency key"
    return f"job service unavailable (HTTP {failure.status})"


def ignore_notice(notice: RetryNotice) -> None:
    """The default listener: retries are counted, not shown."""
