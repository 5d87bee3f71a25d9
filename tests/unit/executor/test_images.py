"""Checksums, and what an unreachable image store turns into."""

from __future__ import annotations

import pytest
from pymongo import MongoClient

from executor_service.errors import ErrorCode, JobFailure
from executor_service.images import StoredImages, verify
from executor_service.jobs import ImageRef
from tests.unit.executor.builders import image_ref


def test_matching_bytes_pass() -> None:
    verify(b"abc", ImageRef(**image_ref(b"abc")))


@pytest.mark.parametrize("stored", [b"abd", b"abc\x00"])
def test_other_bytes_are_a_checksum_mismatch(stored: bytes) -> None:
    with pytest.raises(JobFailure) as caught:
        verify(stored, ImageRef(**image_ref(b"abc")))
    assert caught.value.code is ErrorCode.IMAGE_CHECKSUM_MISMATCH
    assert caught.value.retryable is False


def test_unreachable_store_fails_as_retryable_after_the_attempts() -> None:
    # Nothing listens on port 1: each attempt ends at the 100 ms server selection timeout.
    client: MongoClient = MongoClient("mongodb://127.0.0.1:1/", serverSelectionTimeoutMS=100)
    try:
        images = StoredImages(client["nowhere"], attempts=2, backoff_s=0.01)
        with pytest.raises(JobFailure) as caught:
            images.read(image_ref(b"x")["uri"], max_bytes=1000)
    finally:
        client.close()
    assert caught.value.code is ErrorCode.IMAGE_UNREADABLE
    assert caught.value.retryable is True
    assert "after 2 attempts" in caught.value.message


def test_a_malformed_reference_is_an_invalid_request() -> None:
    client: MongoClient = MongoClient("mongodb://127.0.0.1:1/", connect=False)
    try:
        with pytest.raises(JobFailure) as caught:
            StoredImages(client["nowhere"]).read("blob://Images/123", max_bytes=1000)
    finally:
        client.close()
    assert caught.value.code is ErrorCode.INVALID_REQUEST
