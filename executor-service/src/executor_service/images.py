"""Reading a job's image by its claim check, from the store its scheme names, and checking it."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Protocol

from executor_service.errors import ErrorCode, JobFailure
from executor_service.jobs import ImageRef
from inference_common.image_store import (
    ImageCorrupt,
    ImageMissing,
    ImageStore,
    ImageStoreError,
    ImageStoreUnavailable,
)

log = logging.getLogger(__name__)


class ImageSource(Protocol):
    def read(self, uri: str, max_bytes: int) -> bytes: ...


class StoredImages:
    """Images the job service stored, read through the image-store port (inference_common
    .image_stores): a store that does not answer is tried again, with a growing pause."""

    def __init__(self, store: ImageStore, attempts: int = 3, backoff_s: float = 0.2) -> None:
        self._store = store
        self._attempts = attempts
        self._backoff_s = backoff_s

    def read(self, uri: str, max_bytes: int) -> bytes:
        for attempt in range(1, self._attempts + 1):
            try:
                data = self._load(uri)
            except ImageStoreUnavailable as exc:
                if attempt == self._attempts:
                    raise JobFailure(
                        ErrorCode.IMAGE_UNREADABLE,
                        f"image store unavailable after {attempt} attempts: {exc}",
                        retryable=True,
                    ) from exc
                log.warning("image store error, retrying", extra={"error": str(exc)})
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
                continue
            if len(data) > max_bytes:
                raise JobFailure(
                    ErrorCode.IMAGE_UNREADABLE,
                    f"image of {len(data)} bytes exceeds the limit of {max_bytes}",
                )
            return data
        raise AssertionError("unreachable")  # the loop returns or raises

    def _load(self, uri: str) -> bytes:
        """The checked bytes; a JobFailure for what another attempt would not change."""
        try:
            return self._store.get(uri)
        except ValueError as exc:
            raise JobFailure(ErrorCode.INVALID_REQUEST, str(exc)) from exc
        except ImageMissing as exc:
            raise JobFailure(ErrorCode.IMAGE_MISSING, str(exc)) from exc
        except ImageCorrupt as exc:
            raise JobFailure(ErrorCode.IMAGE_CHECKSUM_MISMATCH, str(exc)) from exc
        except ImageStoreUnavailable:
            raise
        except ImageStoreError as exc:  # e.g. access denied: another attempt will not help
            raise JobFailure(ErrorCode.IMAGE_UNREADABLE, str(exc)) from exc


def verify(data: bytes, image: ImageRef) -> None:
    """The bytes must be the ones the job was created with."""
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != image.size or actual != image.sha256:
        raise JobFailure(
            ErrorCode.IMAGE_CHECKSUM_MISMATCH,
            f"image has {len(data)} bytes with sha256 {actual}; "
            f"the job expects {image.size} bytes with sha256 {image.sha256}",
        )
