"""Connexion's body validators, reporting every problem found instead of the first one."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.validators import (
    VALIDATOR_MAP,
    FormDataValidator,
    JSONRequestBodyValidator,
    MultiPartFormDataValidator,
)
from jsonschema import Draft4Validator, ValidationError
from starlette.formparsers import MultiPartException
from starlette.types import Scope


def pointer(error: ValidationError) -> str:
    return "".join(f"/{part}" for part in error.absolute_path)


def collect(validator: Draft4Validator, body: Any) -> list[dict[str, str]]:
    return [
        {"detail": error.message, "pointer": pointer(error)}
        for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path)))
    ]


class ValidationProblem(BadRequestProblem):  # type: ignore[misc]
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(detail="the request body is not valid: " + errors[0]["detail"])
        self.ext = {"errors": errors}


class CollectingJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        try:
            return await super()._parse(stream, scope)
        except UnicodeDecodeError as exc:
            # Connexion 3.3 lets this through as a 500.
            raise BadRequestProblem(detail=f"the body is not UTF-8 JSON: {exc.reason}") from None

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if body is None:
            # An optional body may be left out (Connexion 3.3 refuses that too).
            if self._required and not self._nullable:
                raise BadRequestProblem("the request body must not be empty")
            return None
        errors = collect(self._validator, body)
        if errors:
            raise ValidationProblem(errors)
        return None


class CollectingMultiPartValidator(MultiPartFormDataValidator):  # type: ignore[misc]
    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        try:
            return await super()._parse(stream, scope)
        except MultiPartException as exc:
            # Starlette 1.x reports a missing boundary so; Connexion lets it through as a 500.
            raise BadRequestProblem(detail=f"the multipart body is malformed: {exc}") from None
        except json.JSONDecodeError as exc:
            # An object field, which the spec encodes as JSON (Connexion decodes it unguarded).
            raise ValidationProblem(
                [
                    {"detail": f"{name} is not valid JSON: {exc.msg}", "pointer": f"/{name}"}
                    for name, field in self._schema.get("properties", {}).items()
                    if field.get("type") == "object"
                ]
            ) from None

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if not isinstance(body, dict):
            raise BadRequestProblem("the form could not be read")
        errors = collect(self._validator, body)
        if errors:
            raise ValidationProblem(errors)
        return None


def validator_map() -> dict[str, Any]:
    return {
        **VALIDATOR_MAP,
        "body": MediaTypeDict(
            {
                "*/*json": CollectingJSONBodyValidator,
                "application/x-www-form-urlencoded": FormDataValidator,
                "multipart/form-data": CollectingMultiPartValidator,
            }
        ),
    }
