"""Check events and HTTP answers against the contracts in openapi/ (the single source)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]


@cache
def asyncapi() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "openapi" / "asyncapi.yaml").read_text()))


def _validate(name: str, instance: object) -> None:
    document = asyncapi()
    schema = {**document, "$ref": f"#/components/schemas/{name}"}
    jsonschema.validate(instance, schema, format_checker=jsonschema.FormatChecker())


def validate_kafka_event(headers: list[tuple[str, bytes]] | None, value: bytes) -> dict[str, Any]:
    """Validate a binary-mode CloudEvent's headers and data; return the decoded data."""
    import json

    header_map = {k: v.decode() for k, v in headers or []}
    _validate("CloudEventHeaders", header_map)
    short = header_map["ce_dataschema"].removeprefix("urn:cvinference:schema:")
    assert header_map["ce_type"] == f"io.cvinference.{short}"
    data = json.loads(value)
    _validate(short, data)
    assert data["job_id"] == header_map["ce_subject"] == header_map["ce_partitionkey"]
    return dict(data)
