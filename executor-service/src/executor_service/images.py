"""Reading a job's image by its claim check (`blob://<collection>/<id>`) and checking it."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Protocol

from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError

from executor_service.errors import ErrorCode, JobFailure
from executor_service.jobs import ImageRef
from inference_common.image_refs import parse_image_uri

log = logging.getLogger(__name__)

# Errors worth another attempt: the server or the network, not the request.
_TRANSIENT = (ConnectionFailure, ExecutionTimeout)


class ImageSource(Protocol):
    def read(self, uri: str, max_bytes: int) -> bytes: ...


class StoredImages:
    """Images the job service stored, one document each, read by `_id` (see image_refs)."""

    def __init__(self, database: Database[Any], attempts: int = 3, backoff_s: float = 0.2) -> None:
        self._database = database
        self._attempts = attempts
        self._backoff_s = backoff_s

    def read(self, uri: str, max_bytes: int) -> bytes:
        try:
            collection, image_id = parse_image_uri(uri)
        except ValueError as exc:
            raise JobFailure(ErrorCode.INVALID_REQUEST, str(exc)) from exc
        for attempt in range(1, self._attempts + 1):
            try:
                return self._load(collection, image_id, max_bytes)
            except _TRANSIENT as exc:
                if attempt == self._attempts:
                    raise JobFailure(
                        ErrorCode.IMAGE_UNREADABLE,
                        f"image store unavailable after {attempt} attempts: {exc}",
                        retryable=True,
                    ) from exc
                log.warning("image store error, retrying", extra={"error": str(exc)})
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _load(self, collection: str, image_id: str, max_bytes: int) -> bytes:
        try:
            document = self._database[collection].find_one({"_id": ObjectId(image_id)})
        except _TRANSIENT:
            raise
        except PyMongoError as exc:  # e.g. authorisation: retrying will not help
            raise JobFailure(ErrorCode.IMAGE_UNREADABLE, f"image {image_id}: {exc}") from exc
        if document is None:
            raise JobFailure(ErrorCode.IMAGE_MISSING, f"no image {image_id} in {collection}")
        data = bytes(document["data"])
        if len(data) > max_bytes:
            raise JobFailure(
                ErrorCode.IMAGE_UNREADABLE,
                f"image of {len(data)} bytes exceeds the limit of {max_bytes}",
            )
        return data


def verify(data: bytes, image: ImageRef) -> None:
    """The bytes must be the ones the job was created with."""
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != image.size or actual != image.sha256:
        raise JobFailure(
            ErrorCode.IMAGE_CHECKSUM_MISMATCH,
            f"image has {len(data)} bytes with sha256 {actual}; "
            f"the job expects {image.size} bytes with sha256 {image.sha256}",
        )
