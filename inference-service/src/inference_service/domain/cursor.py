"""Opaque page cursors: the (created_at, id) of the last job on a page, newest first."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from inference_common.job_ids import is_job_id
from inference_service.domain.clock import as_utc, iso


class InvalidCursor(ValueError):
    """A cursor this service did not make (or made for another version); 400."""


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    job_id: str

    def encode(self) -> str:
        raw = json.dumps({"t": iso(self.created_at), "i": self.job_id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            fields = json.loads(raw)
            created_at = as_utc(datetime.fromisoformat(fields["t"]))
            job_id = fields["i"]
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise InvalidCursor("the cursor is not one this service gave out") from exc
        if not is_job_id(job_id):
            raise InvalidCursor("the cursor is not one this service gave out")
        return cls(created_at, job_id)
