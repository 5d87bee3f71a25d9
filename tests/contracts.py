"""Check events against the event contract (openapi/asyncapi.yaml), with the services' loader."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from inference_common.contracts import EventSchemas

ROOT = Path(__file__).resolve().parents[1]


@cache
def event_schemas() -> EventSchemas:
    return EventSchemas.from_dir(ROOT / "openapi")


def _validate(name: str, instance: object) -> None:
    problems = event_schemas().problems(name, instance)
    assert problems == [], f"breaks {name}: {problems}"


def validate_kafka_event(headers: list[tuple[str, bytes]] | None, value: bytes) -> dict[str, Any]:
    """Validate a binary-mode CloudEvent's headers and data; return the decoded data."""
    header_map = {k: v.decode() for k, v in headers or []}
    _validate("CloudEventHeaders", header_map)
    short = header_map["ce_dataschema"].removeprefix("urn:cvinference:schema:")
    assert header_map["ce_type"] == f"io.cvinference.{short}"
    data = json.loads(value)
    _validate(short, data)
    assert data["job_id"] == header_map["ce_subject"] == header_map["ce_partitionkey"]
    return dict(data)
