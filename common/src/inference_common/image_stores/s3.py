"""Images as objects of one S3 bucket: for executors on machines that share no disk.

An object's key is `<prefix><key path>` and its claim check `s3://<bucket>/<object key>`. A put
sends the sha256 along (`x-amz-checksum-sha256`), so the server refuses bytes damaged on the
way, and every read is checked again. Credentials and region come only from the standard AWS
variables and files, read by boto3; so does the endpoint, unless IMAGE_STORE_S3_ENDPOINT names
an S3-compatible server.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from inference_common.image_store import (
    ImageKey,
    ImageMissing,
    ImageStoreError,
    ImageStoreUnavailable,
)
from inference_common.image_stores.keys import parse_key_path
from inference_common.settings import CommonSettings

SCHEME: Final = "s3"
_MISSING: Final = frozenset({"NoSuchKey", "404"})
# Answers that say "not now" rather than "no": worth another attempt.
_BUSY: Final = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"})


def s3_client(settings: CommonSettings) -> Any:
    """A thread-safe S3 client: every executor I/O thread shares it."""
    endpoint = settings.image_store_s3_endpoint
    config = Config(
        connect_timeout=5,
        read_timeout=10,
        retries={"mode": "standard", "max_attempts": 3},
        # One connection per I/O thread that may read at once (executor prefetch).
        max_pool_connections=32,
        # S3-compatible servers on an address of their own serve buckets as paths.
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


class S3ImageStore:
    scheme = SCHEME

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix

    def put(self, key: ImageKey, data: bytes, media_type: str) -> str:
        name = self.prefix + key.path
        checksum = base64.b64encode(bytes.fromhex(key.sha256)).decode()
        with _errors(name):
            self._client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                ContentType=media_type,
                ChecksumSHA256=checksum,
            )
        return f"{SCHEME}://{self.bucket}/{name}"

    def get(self, uri: str) -> bytes:
        name, key = self._parse(uri)
        with _errors(name):
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            data: bytes = response["Body"].read()
        return key.check(data)

    def delete(self, uri: str) -> None:
        name, _ = self._parse(uri)
        with _errors(name):
            self._client.delete_object(Bucket=self.bucket, Key=name)  # S3: gone already is fine

    def _parse(self, uri: str) -> tuple[str, ImageKey]:
        """(object key, image key). The prefix may be an earlier one: only the key's path counts."""
        bucket, _, name = uri.removeprefix(f"{SCHEME}://").partition("/")
        if not uri.startswith(f"{SCHEME}://") or bucket != self.bucket:
            raise ValueError(f"not an image reference in bucket {self.bucket}: {uri!r}")
        return name, parse_key_path("/".join(name.split("/")[-3:]))


@contextmanager
def _errors(name: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in _MISSING:
            raise ImageMissing(f"no image {name}") from exc
        if status >= 500 or code in _BUSY:
            raise ImageStoreUnavailable(f"image {name}: {exc}") from exc
        raise ImageStoreError(f"image {name}: {exc}") from exc  # e.g. access denied
    except NoCredentialsError as exc:  # the deployment's to fix: another attempt will not help
        raise ImageStoreError(f"image {name}: {exc}") from exc
    except BotoCoreError as exc:  # no connection, a timeout, a body cut short
        raise ImageStoreUnavailable(f"image {name}: {exc}") from exc
