"""Images as documents of the platform database: for deployments without shared storage.

One document per image (inference_common.image_refs.image_document), its `_id` the key's path
and its `owner` the job, read by `_id` (image_refs says why not GridFS). Claim checks are
`blob://images/<key path>`. Those written before image keys existed, `blob://images/<ObjectId>`,
are still read and deleted, so events and jobs from before an upgrade keep working: the store
cannot check their bytes (their address names no hash), the executor checks them against the
event's sha256 as it checks every image.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout, PyMongoError

from inference_common.image_refs import IMAGE_COLLECTION, image_document, parse_image_uri
from inference_common.image_store import (
    ImageKey,
    ImageMissing,
    ImageStoreError,
    ImageStoreUnavailable,
)
from inference_common.image_stores.keys import parse_key_path

SCHEME: Final = "blob"
_URI: Final = re.compile(r"^blob://([a-z_]+)/(.+)$")
# Errors worth another attempt: the server or the network, not the request.
_TRANSIENT: Final = (ConnectionFailure, ExecutionTimeout)


class MongoImageStore:
    scheme = SCHEME

    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._database = database

    def put(self, key: ImageKey, data: bytes, media_type: str) -> str:
        document = image_document(key.path, data, media_type, owner=key.job_id)
        # Put again (a retried create): the same key holds the same bytes.
        with _errors(key.path), suppress(DuplicateKeyError):
            self._database[IMAGE_COLLECTION].insert_one(document)
        return f"{SCHEME}://{IMAGE_COLLECTION}/{key.path}"

    def get(self, uri: str) -> bytes:
        collection, image_id, key = _parse(uri)
        with _errors(str(image_id)):
            document = self._database[collection].find_one({"_id": image_id})
        if document is None:
            raise ImageMissing(f"no image {image_id} in {collection}")
        data = bytes(document["data"])
        return data if key is None else key.check(data)

    def delete(self, uri: str) -> None:
        collection, image_id, _ = _parse(uri)
        with _errors(str(image_id)):
            self._database[collection].delete_one({"_id": image_id})


def _parse(uri: str) -> tuple[str, str | ObjectId, ImageKey | None]:
    """(collection, the document's _id, the key when the URI has one); ValueError otherwise."""
    match = _URI.match(uri)
    if match is None:
        raise ValueError(f"not a MongoDB image reference: {uri!r}")
    collection, path = match.groups()
    if "/" not in path:  # from before image keys
        _, legacy_id = parse_image_uri(uri)
        return collection, ObjectId(legacy_id), None
    key = parse_key_path(path)
    return collection, key.path, key


@contextmanager
def _errors(image: str) -> Iterator[None]:
    try:
        yield
    except _TRANSIENT as exc:
        raise ImageStoreUnavailable(f"image {image}: {exc}") from exc
    except PyMongoError as exc:  # e.g. authorisation: another attempt will not help
        raise ImageStoreError(f"image {image}: {exc}") from exc
