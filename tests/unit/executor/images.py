"""Small images built with Pillow for the preprocessing tests."""

from __future__ import annotations

import io
import struct
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from executor_service.models import InputLayout, TensorInfo

EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def halves(size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...]) -> Image.Image:
    """Left half one colour, right half another: shows flips, rotations and axis swaps."""
    width, height = size
    image = Image.new("RGB", size, left)
    image.paste(Image.new("RGB", (width - width // 2, height), right), (width // 2, 0))
    return image


def with_orientation(image: Image.Image, orientation: int, **options: Any) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95, **options)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds almost no data: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def layout(
    shape: tuple[int, ...], dtype: Any, scale: float = 0.0, zero_point: int = 0
) -> InputLayout:
    return InputLayout.of(TensorInfo(0, "input", shape, np.dtype(dtype), scale, zero_point))


def fake_model(
    input_layout: InputLayout, color: str, resize: str, input_values: str
) -> SimpleNamespace:
    """What preprocessing reads from a LoadedModel, without an interpreter."""
    spec = SimpleNamespace(color=color, resize=resize, input_values=input_values)
    return SimpleNamespace(spec=spec, input=input_layout)
