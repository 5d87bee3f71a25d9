import base64
from datetime import UTC, datetime

import pytest

from inference_service.domain.cursor import Cursor, InvalidCursor

JOB = "0123456789abcdef0123456789abcdef"


def test_round_trip_keeps_instant_and_id() -> None:
    cursor = Cursor(datetime(2026, 11, 23, 12, 30, 1, 123000, tzinfo=UTC), JOB)
    token = cursor.encode()
    assert "=" not in token and "/" not in token and "+" not in token
    assert Cursor.decode(token) == cursor


def test_naive_and_offset_instants_come_back_in_utc() -> None:
    token = base64.urlsafe_b64encode(
        b'{"t":"2026-11-23T14:30:00+02:00","i":"' + JOB.encode() + b'"}'
    )
    decoded = Cursor.decode(token.decode().rstrip("="))
    assert decoded.created_at == datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64 !!",
        base64.urlsafe_b64encode(b"[]").decode(),
        base64.urlsafe_b64encode(b'{"t":"yesterday","i":"' + JOB.encode() + b'"}').decode(),
        base64.urlsafe_b64encode(b'{"t":"2026-11-23T12:00:00Z","i":"nope"}').decode(),
        base64.urlsafe_b64encode(b'{"t":"2026-11-23T12:00:00Z"}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_foreign_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidCursor):
        Cursor.decode(token)
