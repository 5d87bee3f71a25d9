"""The MNIST test set in the asset cache: its IDX files read, and digits made into PNG uploads."""

from __future__ import annotations

import gzip
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image

MNIST_IMAGES: Final = "datasets/mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS: Final = "datasets/mnist/t10k-labels-idx1-ubyte.gz"
_IMAGES_MAGIC: Final = 2051
_LABELS_MAGIC: Final = 2049


@dataclass(frozen=True)
class Digit:
    index: int
    label: int | None
    rows: int
    cols: int
    pixels: bytes  # row-major, white digit on black, as stored

    def png(self) -> bytes:
        buffer = io.BytesIO()
        Image.frombytes("L", (self.cols, self.rows), self.pixels).save(buffer, format="PNG")
        return buffer.getvalue()


def read_digits(images_gz: Path, labels_gz: Path | None, count: int) -> list[Digit]:
    """The first `count` digits (fewer if the file has fewer); labels when given."""
    raw = gzip.decompress(images_gz.read_bytes())
    magic, total, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != _IMAGES_MAGIC:
        raise ValueError(f"{images_gz} is not an IDX3 image file (magic {magic})")
    labels = _read_labels(labels_gz) if labels_gz is not None else b""
    size = rows * cols
    return [
        Digit(
            index=i,
            label=labels[i] if i < len(labels) else None,
            rows=rows,
            cols=cols,
            pixels=raw[16 + i * size : 16 + (i + 1) * size],
        )
        for i in range(min(count, total))
    ]


def _read_labels(labels_gz: Path) -> bytes:
    raw = gzip.decompress(labels_gz.read_bytes())
    magic, _ = struct.unpack(">II", raw[:8])
    return raw[8:] if magic == _LABELS_MAGIC else b""
