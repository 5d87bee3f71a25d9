"""Webhooks: who wants a job's events, which events, and the record of each delivery.

A delivery is one event to one target. Its id is the `webhook-id` header of every attempt,
derived from what it delivers, so a redelivery after a crash carries the same id and the
receiver can drop it. The terminal event of a job has one id per target, whichever event
ended the job: two executors' duplicate `completed` are one delivery.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from standardwebhooks import Webhook

CALLBACK: Final = "callback"  # the target name of a job's own callback
SECRET_PREFIX: Final = "whsec_"


class EventsWanted(StrEnum):
    TERMINAL = "terminal"
    ALL = "all"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True)
class Callback:
    """A job's own target, signed with its owner's secret."""

    job_id: str
    owner: str
    url: str
    events: EventsWanted


@dataclass(frozen=True)
class Subscription:
    """A client's target for all its jobs, with a secret of its own."""

    id: str
    owner: str
    url: str
    events: EventsWanted
    secret: str
    created_at: datetime


@dataclass(frozen=True)
class Target:
    """Where one delivery goes and how it is signed."""

    name: str  # CALLBACK or the subscription's id
    url: str
    events: EventsWanted
    secret: str


@dataclass(frozen=True)
class Attempt:
    attempt: int
    at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class Delivery:
    id: str
    job_id: str
    owner: str
    event_id: str
    event_type: str
    url: str
    target: str
    state: DeliveryState
    attempts: tuple[Attempt, ...]
    next_attempt_at: datetime | None
    updated_at: datetime

    @classmethod
    def new(
        cls, delivery_id: str, *, job_id: str, owner: str, event: Any, target: Target, at: datetime
    ) -> Delivery:
        return cls(
            id=delivery_id,
            job_id=job_id,
            owner=owner,
            event_id=str(event.get_id()),
            event_type=str(event.get_type()),
            url=target.url,
            target=target.name,
            state=DeliveryState.PENDING,
            attempts=(),
            next_attempt_at=None,
            updated_at=at,
        )

    def tried(self, attempt: Attempt, state: DeliveryState, next_at: datetime | None) -> Delivery:
        return dataclasses.replace(
            self,
            attempts=(*self.attempts, attempt),
            state=state,
            next_attempt_at=next_at,
            updated_at=attempt.at,
        )


@dataclass(frozen=True)
class Backoff:
    """Exponential with full jitter: attempt n waits a random time up to base·2^(n-1), capped,
    so receivers that failed together are not hit together again."""

    base_seconds: float
    max_seconds: float
    max_attempts: int

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (failed_attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)


def wanted(target: Target, terminal: bool) -> bool:
    return terminal or target.events is EventsWanted.ALL


def delivery_id(job_id: str, event_id: str, target: str, terminal: bool) -> str:
    """`msg_` and a digest: stable for the same event (or the job's end) and target."""
    what = f"{job_id}|terminal" if terminal else f"{job_id}|{event_id}"
    digest = hashlib.sha256(f"{what}|{target}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def new_subscription_id() -> str:
    return f"wh_{secrets.token_hex(16)}"


def signature(secret: str, message_id: str, at: datetime, body: str) -> str:
    """The `webhook-signature` header (Standard Webhooks, `v1,` and base64 HMAC-SHA256)."""
    return Webhook(secret).sign(message_id, at, body)
