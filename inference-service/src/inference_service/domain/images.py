"""Image validation: is it an image we accept, how big, and is it whole?

Pillow reads only the header to learn the format and size, so a decompression bomb is
refused before a single pixel is decoded; then the image is decoded (at reduced scale for
JPEG) to catch truncated or corrupt files before an executor would.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Final

from PIL import Image, UnidentifiedImageError

from inference_service.domain.jobs import ImageInfo

MEDIA_TYPES: Final = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}
# Pillow opens a JPEG with a multi-picture index (many cameras and phones write one) as MPO;
# it is still a JPEG, and the executor decodes its first picture.
_OPENED_AS: Final = {**MEDIA_TYPES, "MPO": "image/jpeg"}
_EXIF_ORIENTATION: Final = 0x0112
_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})  # orientations that turn the picture by 90 degrees


class InvalidImage(ValueError):
    """Not an image we can use (empty, unknown format, corrupt); the API answers 422."""

    def __init__(self, detail: str, code: str = "invalid-image") -> None:
        self.code = code
        super().__init__(detail)


class ImageTooLarge(ValueError):
    """Over the byte limit (413) or the pixel limit (422, `code` tells which)."""

    def __init__(self, detail: str, code: str) -> None:
        self.code = code
        super().__init__(detail)


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageTooLarge(
            f"the image has {size} bytes; the limit is {max_bytes}", "image-too-large"
        )


def inspect_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Validate `data` and describe it; raises InvalidImage or ImageTooLarge."""
    if not data:
        raise InvalidImage("the image is empty", "empty-image")
    check_size(len(data), max_bytes)
    with warnings.catch_warnings():
        # Our own pixel limit applies below; Pillow's global one must not decide first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            # Only the accepted formats' parsers ever see the bytes (no EPS, PSD, ...).
            with Image.open(io.BytesIO(data), formats=tuple(MEDIA_TYPES)) as image:
                media_type = _OPENED_AS[image.format or "JPEG"]
                width, height = image.size
                if width < 1 or height < 1:
                    raise InvalidImage("the image has no pixels", "corrupt-image")
                if width * height > max_pixels:
                    raise ImageTooLarge(
                        f"the image has {width}x{height} = {width * height} pixels; "
                        f"the limit is {max_pixels}",
                        "too-many-pixels",
                    )
                _decode(image)
                # After decoding: reading a PNG's EXIF decodes the whole image (a bomb's too).
                if turned_sideways(image):
                    width, height = height, width
        except (InvalidImage, ImageTooLarge):
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc), "too-many-pixels") from exc
        except UnidentifiedImageError as exc:
            raise InvalidImage(
                "the body is not an image in a format we accept; send one of "
                + ", ".join(sorted(MEDIA_TYPES.values())),
                "unsupported-image-type",
            ) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise InvalidImage(f"the image is corrupt: {exc}", "corrupt-image") from exc
    return ImageInfo(
        media_type=media_type,
        size=len(data),
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def turned_sideways(image: Image.Image) -> bool:
    """Whether the EXIF orientation turns the picture by 90 degrees to show it: the job then
    records the upright width and height, as the executor sees them and as detection boxes
    refer to them."""
    try:
        return image.getexif().get(_EXIF_ORIENTATION) in _SWAPS_AXES
    except Exception:  # a broken EXIF block does not make the picture unusable
        return False


def _decode(image: Image.Image) -> None:
    """Decode every byte; JPEG at 1/8 scale (DCT scaling), which still reads the whole file."""
    if image.format == "JPEG":
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()
