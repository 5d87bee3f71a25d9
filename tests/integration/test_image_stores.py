"""The image-store contract against the MongoDB API (the local stack's FerretDB, or
MONGODB_URI), and the stores picked by a claim check's scheme."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from inference_common.image_refs import IMAGE_COLLECTION, image_document
from inference_common.image_store import ImageMissing, ImageStoreUnavailable
from inference_common.image_stores import MongoImageStore, open_image_store
from inference_common.mongo import sync_client
from inference_common.settings import CommonSettings
from tests.image_store_contract import ImageStoreContract, StoreUnderTest, image, key_of

pytestmark = pytest.mark.integration


@pytest.fixture
def mongo(settings: CommonSettings) -> Iterator[MongoClient[dict[str, Any]]]:
    client = sync_client(settings)
    yield client
    client.close()


class TestMongoImageStore(ImageStoreContract):
    @pytest.fixture
    def subject(
        self, settings: CommonSettings, mongo: MongoClient[dict[str, Any]]
    ) -> StoreUnderTest:
        database = mongo[settings.mongodb_database]

        def corrupt(uri: str) -> None:
            path = uri.removeprefix(f"blob://{IMAGE_COLLECTION}/")
            document = database[IMAGE_COLLECTION].find_one({"_id": path})
            assert document is not None
            changed = bytes(document["data"])[:-1] + b"!"
            database[IMAGE_COLLECTION].update_one({"_id": path}, {"$set": {"data": changed}})

        def held(uri: str) -> bool:
            path = uri.removeprefix(f"blob://{IMAGE_COLLECTION}/")
            return database[IMAGE_COLLECTION].count_documents({"_id": path}) == 1

        return StoreUnderTest(MongoImageStore(database), corrupt, held)


def test_mongodb_stores_one_document_per_image_read_by_id(
    settings: CommonSettings, mongo: MongoClient[dict[str, Any]]
) -> None:
    database = mongo[settings.mongodb_database]
    data = image()
    key = key_of(data)
    uri = MongoImageStore(database).put(key, data, "image/png")
    assert uri == f"blob://images/{key.path}"
    document = database[IMAGE_COLLECTION].find_one({"_id": key.path})
    assert document is not None
    assert (bytes(document["data"]), document["media_type"]) == (data, "image/png")
    assert (document["size"], document["owner"]) == (len(data), key.job_id)


def test_mongodb_still_reads_and_deletes_images_from_before_image_keys(
    settings: CommonSettings, mongo: MongoClient[dict[str, Any]]
) -> None:
    database = mongo[settings.mongodb_database]
    data, image_id = image(), ObjectId()
    database[IMAGE_COLLECTION].insert_one(image_document(image_id, data, "image/jpeg", "client"))
    store = MongoImageStore(database)
    uri = f"blob://images/{image_id}"
    assert store.get(uri) == data
    store.delete(uri)
    with pytest.raises(ImageMissing):
        store.get(uri)


def test_mongodb_down_is_unavailable() -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(
        "mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=300, connectTimeoutMS=300
    )
    store = MongoImageStore(client["nowhere"])
    data = image()
    try:
        with pytest.raises(ImageStoreUnavailable):
            store.put(key_of(data), data, "image/jpeg")
        with pytest.raises(ImageStoreUnavailable):
            store.get(f"blob://images/{key_of(data).path}")
    finally:
        client.close()


def test_images_stay_readable_and_deletable_after_image_store_changes(
    settings: CommonSettings, tmp_path: Any
) -> None:
    """Written with IMAGE_STORE=filesystem, then read and deleted by a process that now puts
    new images in MongoDB: the claim check's scheme picks the store."""
    before = CommonSettings(image_store="filesystem", image_store_dir=tmp_path)
    after = before.model_copy(update={"image_store": "mongodb"})
    data = image()
    old_uri = open_image_store(before).put(key_of(data), data, "image/jpeg")
    stores = open_image_store(after)
    try:
        new_uri = stores.put(key_of(data), data, "image/jpeg")
        assert (old_uri.split(":")[0], new_uri.split(":")[0]) == ("fs", "blob")
        assert stores.get(old_uri) == stores.get(new_uri) == data
        stores.delete(old_uri)
        with pytest.raises(ImageMissing):
            stores.get(old_uri)
        assert stores.get(new_uri) == data
    finally:
        stores.close()
