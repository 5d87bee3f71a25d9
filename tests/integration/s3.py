"""Which S3-compatible server the S3 image-store tests use (the `s3_server` fixture)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from inference_common.image_stores.s3 import s3_client
from inference_common.settings import CommonSettings

BUILD_HINT = (
    "versitygw is not built and STACK_S3 is unset: `make test` or `make test-s3` (or STACK_S3=1) "
    "builds it from the Go module proxy and runs these tests; IMAGE_STORE_S3_ENDPOINT (with the "
    "AWS_* variables) points them at a server of yours"
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def settings(self, prefix: str = "") -> CommonSettings:
        return CommonSettings(
            image_store="s3",
            image_store_s3_endpoint=self.endpoint,
            image_store_s3_bucket=self.bucket,
            image_store_s3_prefix=prefix,
        )

    def client(self) -> Any:
        return s3_client(self.settings())

    def create_bucket(self) -> None:
        try:
            self.client().create_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response["Error"]["Code"] not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise


def given_server() -> S3Server | None:
    """The server IMAGE_STORE_S3_ENDPOINT names, if any (its credentials: the AWS variables)."""
    endpoint = os.environ.get("IMAGE_STORE_S3_ENDPOINT")
    if not endpoint:
        return None
    return S3Server(endpoint, os.environ.get("IMAGE_STORE_S3_BUCKET", "inference-images"))
