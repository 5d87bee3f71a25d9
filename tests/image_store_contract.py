"""What every image store promises (inference_common.image_store), as tests to inherit.

A test module subclasses `ImageStoreContract` as `Test...` and gives a `subject` fixture: the
store, plus how to damage one stored image behind the store's back (each backend its own way).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from inference_common.image_store import ImageCorrupt, ImageKey, ImageMissing, ImageStore


@dataclass(frozen=True)
class StoreUnderTest:
    store: ImageStore
    # Replaces the stored bytes of the image at this URI with other bytes.
    corrupt: Callable[[str], None]
    # Whether the backend itself still holds bytes at this URI (the file, the document, the
    # object), looked up behind the store's back.
    held: Callable[[str], bool]


def image(size: int = 2048) -> bytes:
    """Bytes of their own for each test: content addresses never collide across tests."""
    return uuid.uuid4().bytes * (size // 16)


def key_of(data: bytes, job_id: str | None = None) -> ImageKey:
    return ImageKey(hashlib.sha256(data).hexdigest(), job_id or uuid.uuid4().hex)


class ImageStoreContract:
    def test_put_then_get_returns_the_same_bytes(self, subject: StoreUnderTest) -> None:
        data = image()
        uri = subject.store.put(key_of(data), data, "image/jpeg")
        assert uri.startswith(f"{subject.store.scheme}:")
        assert subject.store.get(uri) == data

    def test_the_uri_ends_with_the_key_path(self, subject: StoreUnderTest) -> None:
        data = image()
        key = key_of(data)
        assert subject.store.put(key, data, "image/png").endswith(key.path)

    def test_put_twice_is_harmless(self, subject: StoreUnderTest) -> None:
        data = image()
        key = key_of(data)
        first = subject.store.put(key, data, "image/jpeg")
        assert subject.store.put(key, data, "image/jpeg") == first
        assert subject.store.get(first) == data

    def test_delete_removes_and_deleting_again_is_fine(self, subject: StoreUnderTest) -> None:
        data = image()
        uri = subject.store.put(key_of(data), data, "image/jpeg")
        subject.store.delete(uri)
        with pytest.raises(ImageMissing):
            subject.store.get(uri)
        subject.store.delete(uri)

    def test_an_image_never_written_is_missing(self, subject: StoreUnderTest) -> None:
        data = image()
        key = key_of(data)
        uri = subject.store.put(key, data, "image/jpeg").replace(key.job_id, uuid.uuid4().hex)
        with pytest.raises(ImageMissing):
            subject.store.get(uri)
        subject.store.delete(uri)  # gone already: fine

    def test_corrupt_bytes_are_detected_never_served(self, subject: StoreUnderTest) -> None:
        data = image()
        uri = subject.store.put(key_of(data), data, "image/jpeg")
        subject.corrupt(uri)
        with pytest.raises(ImageCorrupt):
            subject.store.get(uri)

    def test_two_jobs_with_the_same_bytes_are_deleted_independently(
        self, subject: StoreUnderTest
    ) -> None:
        """What `DELETE /jobs/{id}` and retention rely on, seen in the backend itself too."""
        data = image()
        first = subject.store.put(key_of(data), data, "image/jpeg")
        second = subject.store.put(key_of(data), data, "image/jpeg")
        assert first != second
        assert subject.held(first) and subject.held(second)
        subject.store.delete(first)
        assert not subject.held(first) and subject.held(second)
        assert subject.store.get(second) == data
        with pytest.raises(ImageMissing):
            subject.store.get(first)
        subject.store.delete(second)
        assert not subject.held(second)
        with pytest.raises(ImageMissing):
            subject.store.get(second)

    def test_concurrent_puts_deletes_and_reads(self, subject: StoreUnderTest) -> None:
        """Eight threads at once: one key put by all, and eight jobs sharing the same bytes,
        half of them deleted while the others are written."""
        data = image(64 * 1024)
        shared = key_of(data)
        jobs = [key_of(data) for _ in range(8)]
        start = threading.Barrier(8)

        def work(index: int) -> tuple[str, str]:
            start.wait(timeout=30)
            uris = (
                subject.store.put(shared, data, "image/jpeg"),
                subject.store.put(jobs[index], data, "image/jpeg"),
            )
            if index % 2:
                subject.store.delete(uris[1])
            return uris

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        assert len({shared_uri for shared_uri, _ in results}) == 1
        assert subject.store.get(results[0][0]) == data
        for index, (_, uri) in enumerate(results):
            if index % 2:
                with pytest.raises(ImageMissing):
                    subject.store.get(uri)
            else:
                assert subject.store.get(uri) == data

    @pytest.mark.parametrize(
        "uri",
        [
            "",
            "http://example.invalid/image.jpg",
            "fs:/etc/passwd",
            "fs:../../etc/passwd",
            "blob://images/not-an-id",
            "s3://bucket/ab/not-a-key",
        ],
    )
    def test_a_uri_it_cannot_read_is_a_value_error(self, subject: StoreUnderTest, uri: str) -> None:
        with pytest.raises(ValueError):
            subject.store.get(uri)
        with pytest.raises(ValueError):
            subject.store.delete(uri)

    def test_a_key_path_whose_fan_out_disagrees_is_refused(self, subject: StoreUnderTest) -> None:
        data = image()
        key = key_of(data)
        uri = subject.store.put(key, data, "image/jpeg")
        wrong = "00" if key.sha256[:2] != "00" else "11"
        with pytest.raises(ValueError):
            subject.store.get(
                uri.replace(f"{key.sha256[:2]}/{key.sha256}", f"{wrong}/{key.sha256}")
            )
