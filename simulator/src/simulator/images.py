"""Which images to upload for which model.

Digit models (MNIST) get handwritten digits, exported as PNG in memory from the MNIST test set
in the asset cache; every other model gets the sample photos the asset manifest lists. A
directory given with `--images` replaces both, for every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from inference_client import ImageUpload, Model
from inference_common.assets import AssetStore, Manifest
from inference_common.image_files import IMAGE_MEDIA_TYPES, image_media_type
from inference_common.mnist import MNIST_IMAGES, MNIST_LABELS, read_digits

MNIST_SAMPLE_COUNT: Final = 20
DIGITS: Final = tuple(str(d) for d in range(10))


class NoImages(RuntimeError):
    """The images a run needs are not there; the message says how to get them."""


def load_directory(directory: Path) -> list[ImageUpload]:
    """Every file with an image suffix, sorted by name so runs are repeatable."""
    if not directory.is_dir():
        raise NoImages(f"{directory} is not a directory")
    samples = [
        ImageUpload(path.name, path.read_bytes(), media_type)
        for path in sorted(directory.iterdir())
        if path.is_file() and (media_type := image_media_type(path)) is not None
    ]
    if not samples:
        suffixes = ", ".join(sorted(IMAGE_MEDIA_TYPES))
        raise NoImages(f"no images ({suffixes}) in {directory}")
    return samples


def is_digit_model(model: Model, manifest: Manifest | None) -> bool:
    """The manifest knows our models; for others, ten classes is the tell."""
    if manifest is not None:
        try:
            spec = manifest.model_spec(model.name)
        except KeyError:
            pass
        else:
            return spec.labels == DIGITS
    return model.task == "classification" and model.label_count == 10


def manifest_photos(store: AssetStore) -> list[ImageUpload]:
    samples = []
    for asset in store.manifest.images():
        try:
            path = store.path_of(asset.path)
        except FileNotFoundError as exc:
            raise NoImages(str(exc)) from exc
        samples.append(
            ImageUpload(path.name, path.read_bytes(), image_media_type(path) or "image/*")
        )
    return samples


def mnist_digits(images_gz: Path, labels_gz: Path | None, count: int) -> list[ImageUpload]:
    """The first `count` test digits as 28x28 grayscale PNGs, named after their label."""
    try:
        digits = read_digits(images_gz, labels_gz, count)
    except ValueError as exc:
        raise NoImages(str(exc)) from exc
    return [
        ImageUpload(
            f"mnist-{d.index:04d}{'' if d.label is None else f'-digit-{d.label}'}.png",
            d.png(),
            "image/png",
        )
        for d in digits
    ]


@dataclass(frozen=True)
class SampleImages:
    """The images for each model of a run, loaded once and shared by every job."""

    by_model: dict[str, Sequence[ImageUpload]]

    def for_model(self, model: str) -> Sequence[ImageUpload]:
        return self.by_model[model]


def select_images(
    models: Sequence[Model], store: AssetStore | None, directory: Path | None = None
) -> SampleImages:
    """Load only what the chosen models need: no MNIST decoding for a photos-only run."""
    if directory is not None:
        chosen = load_directory(directory)
        return SampleImages({model.name: chosen for model in models})
    if store is None:
        raise NoImages("no asset manifest to take sample images from: give --images DIR")
    digit_models = {m.name for m in models if is_digit_model(m, store.manifest)}
    photos = manifest_photos(store) if len(digit_models) < len(models) else []
    digits: list[ImageUpload] = []
    if digit_models:
        try:
            images_gz = store.path_of(MNIST_IMAGES)
        except FileNotFoundError as exc:
            raise NoImages(str(exc)) from exc
        try:
            labels_gz: Path | None = store.path_of(MNIST_LABELS)
        except FileNotFoundError:
            labels_gz = None  # labels only name the files
        digits = mnist_digits(images_gz, labels_gz, MNIST_SAMPLE_COUNT)
    return SampleImages({m.name: digits if m.name in digit_models else photos for m in models})
