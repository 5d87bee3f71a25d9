"""The image-store contract against an S3-compatible server: the local stack's versitygw, or
IMAGE_STORE_S3_ENDPOINT's (the `s3_server` fixture says which, and when these tests skip)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from inference_common.image_store import ImageMissing, ImageStoreError, ImageStoreUnavailable
from inference_common.image_stores import open_image_store
from inference_common.image_stores.s3 import S3ImageStore, s3_client
from inference_common.settings import CommonSettings
from tests.image_store_contract import ImageStoreContract, StoreUnderTest, image, key_of
from tests.integration.s3 import S3Server

pytestmark = pytest.mark.integration


class TestS3ImageStore(ImageStoreContract):
    @pytest.fixture
    def subject(self, s3_server: S3Server) -> StoreUnderTest:
        settings = s3_server.settings(prefix=f"test-{uuid.uuid4().hex[:8]}/")
        client = s3_client(settings)
        bucket = settings.image_store_s3_bucket

        def corrupt(uri: str) -> None:
            name = uri.removeprefix(f"s3://{bucket}/")
            data = client.get_object(Bucket=bucket, Key=name)["Body"].read()
            client.put_object(Bucket=bucket, Key=name, Body=data[:-1] + b"!")

        return StoreUnderTest(S3ImageStore(client, bucket, settings.image_store_s3_prefix), corrupt)


class TestImageStoresOverS3(ImageStoreContract):
    @pytest.fixture
    def subject(self, s3_server: S3Server) -> Iterator[StoreUnderTest]:
        settings = s3_server.settings(prefix="")
        client = s3_client(settings)
        bucket = settings.image_store_s3_bucket

        def corrupt(uri: str) -> None:
            name = uri.removeprefix(f"s3://{bucket}/")
            client.put_object(Bucket=bucket, Key=name, Body=b"not the image")

        stores = open_image_store(settings)
        assert stores.scheme == "s3"
        yield StoreUnderTest(stores, corrupt)
        stores.close()


def test_s3_objects_are_content_addressed_under_the_prefix(s3_server: S3Server) -> None:
    settings = s3_server.settings(prefix="some/prefix/")
    client = s3_client(settings)
    store = S3ImageStore(client, settings.image_store_s3_bucket, settings.image_store_s3_prefix)
    data = image()
    key = key_of(data)
    uri = store.put(key, data, "image/webp")
    assert uri == f"s3://{settings.image_store_s3_bucket}/some/prefix/{key.path}"
    head = client.head_object(Bucket=settings.image_store_s3_bucket, Key=f"some/prefix/{key.path}")
    assert (head["ContentLength"], head["ContentType"]) == (len(data), "image/webp")
    # A store with another prefix (the setting changed) still reads the images put before.
    assert S3ImageStore(client, settings.image_store_s3_bucket, "other/").get(uri) == data


def test_s3_refuses_bytes_damaged_on_the_way(s3_server: S3Server) -> None:
    """The put sends the sha256: the server checks it, so a wrong body is never stored."""
    settings = s3_server.settings(prefix="")
    store = S3ImageStore(s3_client(settings), settings.image_store_s3_bucket)
    data = image()
    key = key_of(data)
    with pytest.raises(ImageStoreError) as raised:
        store.put(key, b"damaged" + data, "image/jpeg")
    assert not isinstance(raised.value, ImageStoreUnavailable)  # the same put would fail again
    with pytest.raises(ImageMissing):
        store.get(f"s3://{settings.image_store_s3_bucket}/{key.path}")


def test_s3_in_another_bucket_is_not_read(s3_server: S3Server) -> None:
    settings = s3_server.settings(prefix="")
    store = S3ImageStore(s3_client(settings), settings.image_store_s3_bucket)
    data = image()
    path = key_of(data).path
    with pytest.raises(ValueError):
        store.get(f"s3://another-bucket/{path}")


def test_s3_down_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")  # requests are signed before they are sent
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    settings = CommonSettings(image_store_s3_endpoint="http://127.0.0.1:9")
    store = S3ImageStore(s3_client(settings), "inference-images")
    data = image()
    key = key_of(data)
    with pytest.raises(ImageStoreUnavailable):
        store.put(key, data, "image/jpeg")
    with pytest.raises(ImageStoreUnavailable):
        store.get(f"s3://inference-images/{key.path}")
