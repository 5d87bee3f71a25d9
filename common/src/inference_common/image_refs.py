"""Image claim checks: events carry `blob://<collection>/<id>`, never the bytes.

An image is one document `{_id, data, media_type, size, owner}` in that collection of the
platform's database, read by `_id`. Not GridFS: GridFS finds chunks by `files_id`, and FerretDB
1.24 answers any query but one on `_id` by decoding every document of the collection, so image
reads slowed with every image kept (about 400 ms at 140 stored chunks). The upload limit keeps
each image far below MongoDB's 16 MB document limit.
"""

import re
from typing import Final

IMAGE_COLLECTION: Final = "images"
_URI: Final = re.compile(r"^blob://([a-z_]+)/([0-9a-f]{24})$")


def image_uri(collection: str, image_id: str) -> str:
    return f"blob://{collection}/{image_id}"


def parse_image_uri(uri: str) -> tuple[str, str]:
    """(collection, image id); ValueError for anything else, so a bad reference fails the job."""
    match = _URI.match(uri)
    if match is None:
        raise ValueError(f"not an image reference: {uri!r}")
    return match.group(1), match.group(2)


def image_document(image_id: object, data: bytes, media_type: str, owner: str) -> dict[str, object]:
    """The stored form of one image; readers need only `data`."""
    return {
        "_id": image_id,
        "data": data,
        "size": len(data),
        "media_type": media_type,
        "owner": owner,
    }
