"""The bundled sample images from the asset cache, each with its credit from the manifest.

The photos are the manifest's images; the handwritten digits are the first few of the MNIST
test set, turned into PNG in memory. Whatever is not fetched yet is simply not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from inference_common.assets import Manifest, load_manifest
from inference_common.image_files import image_media_type
from inference_common.mnist import MNIST_IMAGES, MNIST_LABELS, read_digits
from inference_common.settings import CommonSettings

MNIST_SAMPLES: Final = 10


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    media_type: str
    credit: str | None


def media_type_of(filename: str, fallback: str = "application/octet-stream") -> str:
    return image_media_type(filename) or fallback


def bundled_samples(settings: CommonSettings | None = None) -> list[Sample]:
    settings = settings or CommonSettings()
    try:
        manifest = load_manifest(settings.assets_manifest)
    except OSError:
        return []
    return mnist_digits(manifest, settings.assets_cache_dir) + photos(
        manifest, settings.assets_cache_dir
    )


def photos(manifest: Manifest, cache_dir: Path) -> list[Sample]:
    return [
        Sample(path.name, path.read_bytes(), media_type_of(path.name), asset.credit)
        for asset in manifest.images()
        if (path := cache_dir / asset.path).is_file()
    ]


def mnist_digits(manifest: Manifest, cache_dir: Path, count: int = MNIST_SAMPLES) -> list[Sample]:
    images, labels = cache_dir / MNIST_IMAGES, cache_dir / MNIST_LABELS
    if not (images.is_file() and labels.is_file()):
        return []
    credit = next((f.credit for f in manifest.file if f.path == MNIST_IMAGES), None)
    return [
        Sample(f"mnist-{d.index:02d}-digit-{d.label}.png", d.png(), "image/png", credit)
        for d in read_digits(images, labels, count)
    ]
