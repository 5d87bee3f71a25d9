"""A corpus of awkward and malformed images, built in code (no binary files in the repository).

Each sample says what the platform does with it, and docs/api.md says the same in words:
through the API either a 4xx problem (`refused`) or accepted, with the media type the bytes
have whatever the client declared; through the executor (the same bytes stored directly,
past the API's checks) either a `job.failed.v1` with `fails_with` or a result whose best class
is `label`.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference_common.mnist import MNIST_IMAGES, MNIST_LABELS, read_digits

ASSETS = Path(__file__).resolve().parents[1] / ".cache" / "assets"
PHOTO_MODEL = "mobilenet-v2-imagenet-quant"
DIGIT_MODEL = "mnist-lstm-tflm-float32"
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    declared_type: str  # the Content-Type the client sends
    filename: str  # the file name the client sends
    model: str
    refused: tuple[int, str] | None = None  # (status, problem slug) through POST /jobs
    media_type: str | None = None  # when accepted: what the job records (from the bytes)
    size: tuple[int, int] | None = None  # when accepted: upright width and height
    label: str | None = None  # the executor's best class
    fails_with: str | None = None  # the executor's error code


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_of_zeros(width: int, height: int, *, declared_only: bool = False) -> bytes:
    """A 1-bit grayscale PNG of width x height black pixels. Whole, it is a decompression bomb
    (100 MP in about 15 kB); `declared_only` keeps the header and almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = b"\x00" * 64 if declared_only else b"\x00" * (height * (1 + (width + 7) // 8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )


@functools.cache
def photo() -> Image.Image:
    with Image.open(ASSETS / "images" / "parrot.jpg") as image:
        return image.convert("RGB")


@functools.cache
def digit() -> tuple[Image.Image, str]:
    first = read_digits(ASSETS / MNIST_IMAGES, ASSETS / MNIST_LABELS, 1)[0]
    image = Image.frombytes("L", (first.cols, first.rows), first.pixels)
    return image, str(first.label)


def _animated(fmt: str, **options: Any) -> bytes:
    later = [Image.new("RGB", photo().size, colour) for colour in ((0, 0, 0), (255, 255, 255))]
    return encode(photo(), fmt, save_all=True, append_images=later, duration=100, **options)


def _exif_rotated() -> bytes:
    """Stored turned a quarter anticlockwise; orientation 6 says: turn clockwise to show."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return encode(photo().rotate(90, expand=True), "JPEG", exif=exif.tobytes(), quality=92)


def _sixteen_bit_digit() -> bytes:
    image, _ = digit()
    wide = np.asarray(image).astype(np.uint16) * 257  # 0..255 onto 0..65535
    return encode(Image.fromarray(wide), "PNG")


def _palette_with_transparency() -> bytes:
    palette = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    return encode(palette, "PNG", transparency=0)


@functools.cache
def corpus() -> tuple[Sample, ...]:
    jpeg = encode(photo(), "JPEG", quality=90)
    png = encode(photo(), "PNG")
    upright = photo().size
    digit_image, digit_label = digit()
    accepted_photo: dict[str, Any] = {"model": PHOTO_MODEL, "size": upright, "label": "macaw"}
    return (
        Sample("zero bytes", b"", "image/jpeg", "empty.jpg", PHOTO_MODEL,
               refused=(422, "empty-image"), fails_with="invalid_request"),
        Sample("truncated JPEG", jpeg[: len(jpeg) // 2], "image/jpeg", "half.jpg", PHOTO_MODEL,
               refused=(422, "corrupt-image"), fails_with="image_unreadable"),
        Sample("truncated PNG", png[: len(png) // 2], "image/png", "half.png", PHOTO_MODEL,
               refused=(422, "corrupt-image"), fails_with="image_unreadable"),
        Sample("text called an image", b"GIF? no, just text " * 8, "image/gif", "a.gif",
               PHOTO_MODEL, refused=(415, "unsupported-image-type"),
               fails_with="image_unreadable"),
        Sample("a format we do not take (PPM)", encode(photo(), "PPM"), "image/x-portable-pixmap",
               "a.ppm", PHOTO_MODEL, refused=(415, "unsupported-image-type"),
               fails_with="image_unreadable"),
        Sample("huge declared dimensions", png_of_zeros(100_000, 100_000, declared_only=True),
               "image/png", "huge.png", PHOTO_MODEL, refused=(422, "too-many-pixels"),
               fails_with="image_unreadable"),
        Sample("decompression bomb", png_of_zeros(10_000, 10_000), "image/png", "bomb.png",
               PHOTO_MODEL, refused=(422, "too-many-pixels"), fails_with="image_unreadable"),
        Sample("PNG bytes called a JPEG", png, "image/jpeg", "parrot.jpg",
               media_type="image/png", **accepted_photo),
        Sample("JPEG bytes declared as octet-stream", jpeg, "application/octet-stream",
               "parrot", media_type="image/jpeg", **accepted_photo),
        Sample("camera JPEG with a second picture (MPO)",
               encode(photo(), "MPO", save_all=True, append_images=[photo().rotate(180)]),
               "image/jpeg", "camera.jpg", media_type="image/jpeg", **accepted_photo),
        Sample("animated GIF (first frame)", _animated("GIF"), "image/gif", "anim.gif",
               media_type="image/gif", **accepted_photo),
        Sample("animated WebP (first frame)", _animated("WEBP", quality=90), "image/webp",
               "anim.webp", media_type="image/webp", **accepted_photo),
        Sample("CMYK JPEG", encode(photo().convert("CMYK"), "JPEG", quality=92), "image/jpeg",
               "cmyk.jpg", media_type="image/jpeg", **accepted_photo),
        Sample("palette PNG with transparency", _palette_with_transparency(), "image/png",
               "palette.png", media_type="image/png", **accepted_photo),
        Sample("EXIF-rotated JPEG", _exif_rotated(), "image/jpeg", "turned.jpg",
               media_type="image/jpeg", **accepted_photo),
        Sample("16-bit grayscale PNG", _sixteen_bit_digit(), "image/png", "digit16.png",
               DIGIT_MODEL, media_type="image/png", size=digit_image.size, label=digit_label),
    )  # fmt: skip


def samples(*, refused: bool) -> list[Sample]:
    return [sample for sample in corpus() if (sample.refused is not None) == refused]
