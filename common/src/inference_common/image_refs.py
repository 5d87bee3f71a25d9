"""Image claim checks: events carry `gridfs://<bucket>/<file id>`, never the bytes."""

import re
from typing import Final

_URI: Final = re.compile(r"^gridfs://([a-z_]+)/([0-9a-f]{24})$")


def image_uri(bucket: str, file_id: str) -> str:
    return f"gridfs://{bucket}/{file_id}"


def parse_image_uri(uri: str) -> tuple[str, str]:
    """(bucket, file id); ValueError for anything else, so a bad reference fails the job."""
    match = _URI.match(uri)
    if match is None:
        raise ValueError(f"not an image reference: {uri!r}")
    return match.group(1), match.group(2)
