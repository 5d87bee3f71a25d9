"""The image stores behind the port (inference_common.image_store), and the one way to open them.

`open_image_store(settings)` gives an `ImageStores`: new images go to the store IMAGE_STORE
names, and a claim check is read and deleted by the store its scheme names (`fs:`, `blob://`,
`s3://`), whatever IMAGE_STORE says now. So an executor reads every image a job service wrote,
and images written before IMAGE_STORE changed stay readable and are still deleted with their
jobs. Stores other than the configured one are opened on first use.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from pymongo import MongoClient

from inference_common.image_store import ImageKey, ImageStore
from inference_common.image_stores.filesystem import FilesystemImageStore
from inference_common.image_stores.mongodb import MongoImageStore
from inference_common.mongo import sync_client
from inference_common.settings import CommonSettings

__all__ = ["FilesystemImageStore", "ImageStores", "MongoImageStore", "open_image_store"]

# IMAGE_STORE's names, by the scheme of the claim checks each store writes.
STORE_OF_SCHEME: Final = {"fs": "filesystem", "blob": "mongodb", "s3": "s3"}


def open_image_store(
    settings: CommonSettings, mongo: MongoClient[dict[str, Any]] | None = None
) -> ImageStores:
    """The stores of these settings; `mongo`, when given, is used rather than a client of
    their own (and stays open on close())."""
    return ImageStores(settings, mongo)


def scheme_of(uri: str) -> str:
    """`fs`, `blob` or `s3`; ValueError for a URI no store reads."""
    scheme = uri.partition(":")[0]
    if scheme not in STORE_OF_SCHEME:
        raise ValueError(f"not an image reference: {uri!r}")
    return scheme


class ImageStores:
    """One ImageStore over all of them: puts go to the configured one, reads and deletes to the
    one the URI's scheme names. Thread-safe, like each store."""

    def __init__(
        self, settings: CommonSettings, mongo: MongoClient[dict[str, Any]] | None = None
    ) -> None:
        self._settings = settings
        self._mongo = mongo
        self._own_mongo: MongoClient[dict[str, Any]] | None = None
        self._stores: dict[str, ImageStore] = {}
        self._lock = threading.Lock()
        # Opened now, so that a wrong setting fails at start rather than at the first job.
        self._configured = self._store(settings.image_store)
        self.scheme = self._configured.scheme

    def put(self, key: ImageKey, data: bytes, media_type: str) -> str:
        return self._configured.put(key, data, media_type)

    def get(self, uri: str) -> bytes:
        return self._store(STORE_OF_SCHEME[scheme_of(uri)]).get(uri)

    def delete(self, uri: str) -> None:
        self._store(STORE_OF_SCHEME[scheme_of(uri)]).delete(uri)

    def close(self) -> None:
        if self._own_mongo is not None:
            self._own_mongo.close()

    def _store(self, name: str) -> ImageStore:
        with self._lock:
            if name not in self._stores:
                self._stores[name] = self._open(name)
            return self._stores[name]

    def _open(self, name: str) -> ImageStore:
        settings = self._settings
        if name == "filesystem":
            return FilesystemImageStore(settings.image_store_dir)
        if name == "mongodb":
            if self._mongo is None:
                self._mongo = self._own_mongo = sync_client(settings)
            return MongoImageStore(self._mongo[settings.mongodb_database])
        # Imported on first use: boto3 takes a few hundred milliseconds to import.
        from inference_common.image_stores.s3 import S3ImageStore, s3_client

        client = s3_client(settings)
        return S3ImageStore(client, settings.image_store_s3_bucket, settings.image_store_s3_prefix)
