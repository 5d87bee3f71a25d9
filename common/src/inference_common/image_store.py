"""The image-store port: where image bytes live, apart from the job documents.

The job service puts an image when a job is created and gets a claim-check URI back; the
URI travels in the job's events, and an executor gets the bytes with it. Every store keys
an image by its sha256 and the job that owns it: the address names the content, so every
read is checked against it, and deleting one job's image never touches another job's copy
of the same bytes.

Adapters (filesystem, MongoDB, S3) implement this Protocol; which one a URI belongs to is
told by its scheme. The port is synchronous: executors read on worker threads, and the
job service calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final, Protocol

from inference_common.job_ids import is_job_id

_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")


class ImageStoreError(Exception):
    """Base of what a store raises."""


class ImageMissing(ImageStoreError):
    """No image at that address (deleted, purged, or never written): final."""


class ImageCorrupt(ImageStoreError):
    """The stored bytes do not hash to the address: final, never served."""


class ImageStoreUnavailable(ImageStoreError):
    """The store did not answer (network, server down): worth another attempt."""


@dataclass(frozen=True)
class ImageKey:
    """An image's address inside any store: its content hash and the job that owns it."""

    sha256: str
    job_id: str

    def __post_init__(self) -> None:
        if not _SHA256.match(self.sha256) or not is_job_id(self.job_id):
            raise ValueError(f"not an image key: {self.sha256!r}/{self.job_id!r}")

    @property
    def path(self) -> str:
        """A relative path, fanned out by the hash's first byte: `ab/abcd…/<job id>`."""
        return f"{self.sha256[:2]}/{self.sha256}/{self.job_id}"

    def check(self, data: bytes) -> bytes:
        """The bytes, if they are the ones addressed; ImageCorrupt otherwise."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.sha256:
            raise ImageCorrupt(f"image {self.path}: stored bytes hash to {actual}")
        return data


class ImageStore(Protocol):
    # The URI scheme this store's claim checks use (`fs`, `blob`, `s3`).
    scheme: str

    def put(self, key: ImageKey, data: bytes, media_type: str) -> str:
        """Store durably (written and synced before it returns); the claim-check URI.
        Putting the same key again is harmless."""
        ...

    def get(self, uri: str) -> bytes:
        """The bytes, checked against their sha256. ImageMissing, ImageCorrupt or
        ImageStoreUnavailable otherwise; ValueError for a URI this store cannot read."""
        ...

    def delete(self, uri: str) -> None:
        """Remove; an image already gone is fine (retried deletes, purges)."""
        ...
