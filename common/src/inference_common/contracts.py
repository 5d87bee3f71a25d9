"""The event contract at run time: event data checked against openapi/asyncapi.yaml.

The one loader of those JSON Schemas: the job service checks the results it folds, the
executor the requests it runs, the tests every event either publishes. Each schema is
compiled to Python once, on its first use (fastjsonschema, AsyncAPI's draft 7; tens of
milliseconds each, so not all of them up front): checking an event then costs about a
tenth of a millisecond, where an interpreting validator (jsonschema) took about two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import fastjsonschema
import yaml
from rfc3339_validator import validate_rfc3339

from inference_common.events import EventType

ASYNCAPI_FILE: Final = "asyncapi.yaml"
# A problem may quote the offending value; an event may carry a large one.
_MAX_PROBLEM_CHARS: Final = 300
# RFC 3339 exactly (fastjsonschema's own pattern takes month 19), as the consumers parse it.
_FORMATS: Final = {"date-time": validate_rfc3339}


class EventSchemas:
    """Validators for the schemas under `components.schemas` of asyncapi.yaml."""

    def __init__(self, asyncapi_path: Path) -> None:
        self.path = asyncapi_path
        self._document: dict[str, Any] = yaml.safe_load(asyncapi_path.read_text())
        self._validators: dict[str, Callable[[object], object]] = {}
        self._compiling = threading.Lock()  # the executor's workers check events at once

    @classmethod
    def from_dir(cls, openapi_dir: Path) -> EventSchemas:
        return cls(openapi_dir / ASYNCAPI_FILE)

    def problems(self, schema: EventType | str, data: object) -> list[str]:
        """How `data` breaks the schema (an event type's, or one named in asyncapi.yaml such
        as `Execution`): the first problem found, as `data.path must ...`; empty when it
        conforms."""
        name = schema.short if isinstance(schema, EventType) else schema
        try:
            self._validator(name)(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            return [_brief(exc.message)]
        return []

    def _validator(self, name: str) -> Callable[[object], object]:
        validator = self._validators.get(name)
        if validator is None:
            with self._compiling:
                validator = self._validators.get(name)
                if validator is None:
                    schema = {**self._document, "$ref": f"#/components/schemas/{name}"}
                    validator = fastjsonschema.compile(schema, formats=_FORMATS)
                    self._validators[name] = validator
        return validator


def _brief(problem: str) -> str:
    if len(problem) <= _MAX_PROBLEM_CHARS:
        return problem
    return problem[: _MAX_PROBLEM_CHARS - 3] + "..."
