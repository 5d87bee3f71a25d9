"""Checksums, and what each answer of the image store turns into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from executor_service.errors import ErrorCode, JobFailure
from executor_service.images import StoredImages, verify
from executor_service.jobs import ImageRef
from inference_common.image_stores import FilesystemImageStore, MongoImageStore
from tests.image_store_contract import image, key_of
from tests.unit.executor.builders import image_ref


def test_matching_bytes_pass() -> None:
    verify(b"abc", ImageRef(**image_ref(b"abc")))


@pytest.mark.parametrize("stored", [b"abd", b"abc\x00"])
def test_other_bytes_are_a_checksum_mismatch(stored: bytes) -> None:
    with pytest.raises(JobFailure) as caught:
        verify(stored, ImageRef(**image_ref(b"abc")))
    assert caught.value.code is ErrorCode.IMAGE_CHECKSUM_MISMATCH
    assert caught.value.retryable is False


def read_failure(images: StoredImages, uri: str, max_bytes: int = 1 << 20) -> JobFailure:
    with pytest.raises(JobFailure) as caught:
        images.read(uri, max_bytes)
    return caught.value


def test_an_image_is_read_from_the_store(tmp_path: Path) -> None:
    data = image()
    store = FilesystemImageStore(tmp_path)
    uri = store.put(key_of(data), data, "image/jpeg")
    assert StoredImages(store).read(uri, max_bytes=len(data)) == data


def test_an_image_over_the_limit_is_unreadable(tmp_path: Path) -> None:
    data = image()
    store = FilesystemImageStore(tmp_path)
    uri = store.put(key_of(data), data, "image/jpeg")
    failure = read_failure(StoredImages(store), uri, max_bytes=len(data) - 1)
    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_UNREADABLE, False)


def test_a_missing_image_is_image_missing(tmp_path: Path) -> None:
    failure = read_failure(StoredImages(FilesystemImageStore(tmp_path)), f"fs:{key_of(b'x').path}")
    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_MISSING, False)


def test_stored_bytes_that_changed_are_a_checksum_mismatch(tmp_path: Path) -> None:
    data = image()
    key = key_of(data)
    store = FilesystemImageStore(tmp_path)
    uri = store.put(key, data, "image/jpeg")
    (tmp_path / key.path).write_bytes(b"other bytes")
    failure = read_failure(StoredImages(store), uri)
    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_CHECKSUM_MISMATCH, False)


def test_unreachable_store_fails_as_retryable_after_the_attempts() -> None:
    # Nothing listens on port 1: each attempt ends at the 100 ms server selection timeout.
    client: MongoClient[dict[str, Any]] = MongoClient(
        "mongodb://127.0.0.1:1/", serverSelectionTimeoutMS=100
    )
    try:
        images = StoredImages(MongoImageStore(client["nowhere"]), attempts=2, backoff_s=0.01)
        failure = read_failure(images, f"blob://images/{key_of(b'x').path}")
    finally:
        client.close()
    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_UNREADABLE, True)
    assert "after 2 attempts" in failure.message


@pytest.mark.parametrize("uri", ["blob://Images/123", "fs:/etc/passwd", "ftp://host/x"])
def test_a_malformed_reference_is_an_invalid_request(tmp_path: Path, uri: str) -> None:
    failure = read_failure(StoredImages(FilesystemImageStore(tmp_path)), uri)
    assert failure.code is ErrorCode.INVALID_REQUEST
