"""The image-store port on MongoDB: one document per image, read by `_id`.

`blob://images/<ObjectId>` URIs, as the executor reads them (inference_common.image_refs says
why one document and not GridFS). Synchronous, as the port is; the job service calls it
through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any, Final

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from inference_common.image_refs import IMAGE_COLLECTION, image_uri, parse_image_uri
from inference_common.image_store import (
    ImageCorrupt,
    ImageKey,
    ImageMissing,
    ImageStoreError,
    ImageStoreUnavailable,
)

SCHEME: Final = "blob"


class MongoImageStore:
    scheme = SCHEME

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self._images = db[IMAGE_COLLECTION]

    def put(self, key: ImageKey, data: bytes, media_type: str) -> str:
        image_id = ObjectId()
        document = {
            "_id": image_id,
            "data": data,
            "size": len(data),
            "media_type": media_type,
            "sha256": key.sha256,
            "job_id": key.job_id,
        }
        with _translated():
            self._images.insert_one(document)
        return image_uri(IMAGE_COLLECTION, str(image_id))

    def get(self, uri: str) -> bytes:
        with _translated():
            document = self._images.find_one({"_id": _object_id(uri)})
        if document is None:
            raise ImageMissing(uri)
        data = bytes(document["data"])
        expected = document.get("sha256")
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise ImageCorrupt(f"{uri}: the stored bytes do not hash to {expected}")
        return data

    def delete(self, uri: str) -> None:
        with _translated():
            self._images.delete_one({"_id": _object_id(uri)})


def _object_id(uri: str) -> ObjectId:
    collection, image_id = parse_image_uri(uri)
    if collection != IMAGE_COLLECTION:
        raise ValueError(f"not an image of this store: {uri!r}")
    try:
        return ObjectId(image_id)
    except InvalidId as exc:
        raise ValueError(f"not an image reference: {uri!r}") from exc


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except ConnectionFailure as exc:
        raise ImageStoreUnavailable(str(exc)) from exc
    except PyMongoError as exc:
        raise ImageStoreError(str(exc)) from exc
