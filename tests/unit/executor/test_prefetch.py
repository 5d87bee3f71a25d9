"""Reads started ahead hand over their bytes, or their failure, to the execution."""

from __future__ import annotations

import threading

import pytest

from executor_service.errors import ErrorCode, JobFailure
from executor_service.prefetch import ImagePrefetcher

URI = "blob://images/65f1a2b3c4d5e6f708192a3b"
OTHER = "blob://images/000000000000000000000000"


class GatedImages:
    """Reads block until released, to show they run off the caller's thread."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.reads: list[tuple[str, str]] = []

    def read(self, uri: str, max_bytes: int) -> bytes:
        self.reads.append((uri, threading.current_thread().name))
        self.started.set()
        self.release.wait(5)
        if uri == OTHER:
            raise JobFailure(ErrorCode.IMAGE_MISSING, "gone")
        return uri.encode()


@pytest.fixture
def source():
    images = GatedImages()
    yield images
    images.release.set()


def test_read_starts_at_once_on_an_io_thread(source: GatedImages) -> None:
    prefetcher = ImagePrefetcher(source, threads=2)
    fetched = prefetcher.prefetch({"image": {"uri": URI}}, 100)
    assert source.started.wait(5)  # before anyone asked for the bytes
    [(uri, thread)] = source.reads
    assert uri == URI and thread.startswith("executor-io")
    source.release.set()
    assert fetched.read(URI, 100) == URI.encode()
    prefetcher.close()


def test_the_reads_failure_reaches_the_execution(source: GatedImages) -> None:
    prefetcher = ImagePrefetcher(source, threads=1)
    fetched = prefetcher.prefetch({"image": {"uri": OTHER}}, 100)
    source.release.set()
    with pytest.raises(JobFailure) as caught:
        fetched.read(OTHER, 100)
    assert caught.value.code is ErrorCode.IMAGE_MISSING
    prefetcher.close()


def test_requests_without_a_uri_are_not_prefetched(source: GatedImages) -> None:
    prefetcher = ImagePrefetcher(source, threads=1)
    assert prefetcher.prefetch({"image": "nope"}, 100) is source
    assert prefetcher.prefetch({}, 100) is source
    assert source.reads == []
    prefetcher.close()
