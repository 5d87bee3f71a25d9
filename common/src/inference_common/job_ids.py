"""A job's id: 32 lowercase hex digits (a random UUID), the `JobId` pattern of both contracts
(openapi/inference-api.yaml, openapi/asyncapi.yaml)."""

from __future__ import annotations

import re
import uuid
from typing import Final

_JOB_ID: Final = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _JOB_ID.match(value) is not None
