"""Claim checks: the pattern every store's URIs match, and the key their path names."""

from __future__ import annotations

import re
from typing import Final

from inference_common.image_store import ImageKey
from inference_common.settings import S3_BUCKET_PATTERN, S3_PREFIX_PATTERN

_PATH: Final = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{64})/([0-9a-f]{32})$")
# `fs:<path>`, `blob://<collection>/<path>`, `s3://<bucket>/<prefix><path>`, where <path> is a
# key's (`ab/<sha256>/<job id>`); and `blob://<collection>/<ObjectId>` from before image keys.
# openapi/asyncapi.yaml (ImageRef.uri) holds the same pattern: a unit test compares them.
IMAGE_URI_PATTERN: Final = (
    rf"^(?:(?:fs:|blob://[a-z_]+/|s3://{S3_BUCKET_PATTERN}/{S3_PREFIX_PATTERN})"
    r"[0-9a-f]{2}/[0-9a-f]{64}/[0-9a-f]{32}|blob://[a-z_]+/[0-9a-f]{24})$"
)


def parse_key_path(path: str) -> ImageKey:
    """The key whose `path` this is; ValueError for anything else (a bad claim check)."""
    match = _PATH.match(path)
    if match is None or match.group(1) != match.group(2)[:2]:
        raise ValueError(f"not an image key path: {path!r}")
    return ImageKey(sha256=match.group(2), job_id=match.group(3))
