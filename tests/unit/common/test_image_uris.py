"""Claim checks: one pattern in the event contract and in code, matched by every store's URIs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from inference_common.image_stores import FilesystemImageStore
from inference_common.image_stores.keys import IMAGE_URI_PATTERN, parse_key_path
from inference_common.image_stores.mongodb import MongoImageStore
from inference_common.image_stores.s3 import S3ImageStore
from tests.contracts import ROOT
from tests.image_store_contract import image, key_of

KEY = key_of(b"some image", "0123456789abcdef0123456789abcdef")


def test_the_event_contract_holds_the_same_pattern() -> None:
    document = yaml.safe_load((ROOT / "openapi" / "asyncapi.yaml").read_text())
    schema = document["components"]["schemas"]["ImageRef"]
    assert schema["properties"]["uri"]["pattern"] == IMAGE_URI_PATTERN


def test_every_store_writes_uris_the_pattern_accepts(tmp_path: Path) -> None:
    data = image()
    key = key_of(data)
    uris = [
        FilesystemImageStore(tmp_path).put(key, data, "image/jpeg"),
        # Neither needs a server to say what its URI would be.
        f"blob://images/{key.path}",
        f"s3://inference-images/{key.path}",
        f"s3://my.bucket-1/some/prefix/{key.path}",
    ]
    for uri in uris:
        assert re.match(IMAGE_URI_PATTERN, uri), uri
    assert MongoImageStore.scheme == "blob" and S3ImageStore.scheme == "s3"


@pytest.mark.parametrize(
    "uri",
    [
        f"fs:/{KEY.path}",
        f"fs:../{KEY.path}",
        f"fs:{KEY.path}/",
        f"blob://images/{KEY.path}/../x",
        f"s3://inference-images/../{KEY.path}",
        f"s3://Bucket/{KEY.path}",
        f"s3://inference-images/a b/{KEY.path}",
        f"file:///{KEY.path}",
        "blob://images/0123",
        f"fs:{KEY.sha256[:2]}/{KEY.sha256}/{KEY.job_id[:-1]}",
    ],
)
def test_the_pattern_refuses_anything_else(uri: str) -> None:
    assert not re.match(IMAGE_URI_PATTERN, uri)


def test_a_key_path_reads_back_into_its_key() -> None:
    assert parse_key_path(KEY.path) == KEY
    with pytest.raises(ValueError):
        parse_key_path(KEY.path.replace(KEY.sha256[:2], "zz", 1))
