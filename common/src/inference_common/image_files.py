"""Which files clients upload as images: by suffix, the formats the executor decodes."""

from pathlib import PurePath
from typing import Final

IMAGE_MEDIA_TYPES: Final = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def image_media_type(name: str | PurePath) -> str | None:
    """The media type for an image file name; None when the suffix is not an image's."""
    return IMAGE_MEDIA_TYPES.get(PurePath(name).suffix.lower())
