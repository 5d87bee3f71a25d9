"""The event contract at run time: data of incoming events checked against asyncapi.yaml."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

from inference_common.events import EventType


class EventSchemas:
    """Validators for each event type's data, built from openapi/asyncapi.yaml."""

    def __init__(self, asyncapi_path: Path) -> None:
        self.path = asyncapi_path

    @cached_property
    def _document(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.path.read_text()))

    @cached_property
    def _validators(self) -> dict[EventType, Draft202012Validator]:
        return {
            event_type: Draft202012Validator(
                {**self._document, "$ref": f"#/components/schemas/{event_type.short}"},
                format_checker=FormatChecker(),
            )
            for event_type in EventType
        }

    def problems(self, event_type: EventType, data: dict[str, Any]) -> list[str]:
        """Every way `data` breaks the schema, empty when it conforms."""
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '(data)'}: {error.message}"
            for error in self._validators[event_type].iter_errors(data)
        ]
