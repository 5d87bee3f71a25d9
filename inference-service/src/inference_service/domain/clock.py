"""Time as the job service stores it: UTC, millisecond precision (what BSON keeps)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes from a client or a driver are UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 with a `Z`, the way every event and response spells time."""
    return as_utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")
