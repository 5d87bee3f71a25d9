"""Image bytes to the input tensor a model wants, as the manifest's [[model]] entry says.

decode -> EXIF orientation -> the model's colour -> stretch or centre crop -> tensor values.
Every decoding problem of untrusted bytes becomes `ImageUnreadable`, never a crash.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from executor_service.errors import ImageUnreadable
from executor_service.models import InputLayout, LoadedModel, TensorInfo

Color = Literal["RGB", "L"]
ResizeMode = Literal["stretch", "center_crop"]
InputValues = Literal["pixels", "unit"]

# Only formats with mature decoders; Pillow would otherwise also try EPS (Ghostscript),
# PSD and a dozen rarer formats on untrusted bytes. MPO (camera JPEGs) opens as JPEG.
FORMATS: Final = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
CROP_FRACTION: Final = 0.875
_EXIF_ORIENTATION: Final = 0x0112
_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})  # the orientations that rotate by 90 degrees
_SIXTEEN_BIT: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


@dataclass(frozen=True)
class PreparedImage:
    tensor: npt.NDArray[Any]
    # The upright image's size (after EXIF rotation), which detection boxes refer to.
    width: int
    height: int


def prepare(
    data: bytes, model: LoadedModel, *, max_pixels: int, jpeg_draft: bool = True
) -> PreparedImage:
    """What the executor does with an image's bytes for `model`."""
    spec = model.spec
    image, (width, height) = decode(
        data,
        color=spec.color,
        draft_size=draft_size(model.input.size, spec.resize) if jpeg_draft else None,
        max_pixels=max_pixels,
    )
    fitted = fit(image, model.input.size, spec.resize)
    pixels = np.asarray(fitted, dtype=np.uint8)
    return PreparedImage(to_tensor(pixels, model.input, spec.input_values), width, height)


def decode(
    data: bytes, *, color: Color, draft_size: tuple[int, int] | None, max_pixels: int
) -> tuple[Image.Image, tuple[int, int]]:
    """The upright image in `color`, and its full size (before any draft reduction)."""
    if not data:
        raise ImageUnreadable("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        # Before the orientation: reading a PNG's EXIF decodes the whole image (a bomb's too).
        _check_pixels(image.size, max_pixels)
        size = _upright_size(image)
        if draft_size is not None and image.format in ("JPEG", "MPO"):
            # DCT scaling in the decoder: 1/2, 1/4 or 1/8 size, never below draft_size.
            rotated = size != image.size
            image.draft(color, (draft_size[1], draft_size[0]) if rotated else draft_size)
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_color(upright, color), size
    except ImageUnreadable:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageUnreadable(f"image too large: {exc}") from exc
    except Exception as exc:  # untrusted bytes: any decoder error is the image's fault
        raise ImageUnreadable(f"cannot decode the image: {type(exc).__name__}: {exc}") from exc


def _upright_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    orientation = image.getexif().get(_EXIF_ORIENTATION)
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise ImageUnreadable(
            f"image of {size[0]}x{size[1]} = {pixels} pixels exceeds the limit of {max_pixels}"
        )


def to_color(image: Image.Image, color: Color) -> Image.Image:
    """Any Pillow mode to L or RGB. Alpha is dropped, as torchvision's loader does."""
    if image.mode in _SIXTEEN_BIT or image.mode == "F":
        image = _to_8bit(image)
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the palette's transparency, without Pillow's warning
    if image.mode == color:
        return image
    try:
        return image.convert(color)
    except ValueError:  # a few rare modes (LAB to L) only convert by way of RGB
        return image.convert("RGB").convert(color)


def _to_8bit(image: Image.Image) -> Image.Image:
    # Pillow's own I;16 -> L conversion clips at 255 instead of scaling: 1000 becomes white.
    values = np.asarray(image).astype(np.float64)
    if image.mode != "F":
        values = values * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def draft_size(target: tuple[int, int], resize: ResizeMode) -> tuple[int, int]:
    """The smallest decode size that still gives the resize enough pixels."""
    if resize == "stretch":
        return target
    return math.ceil(target[0] / CROP_FRACTION), math.ceil(target[1] / CROP_FRACTION)


def fit(image: Image.Image, size: tuple[int, int], resize: ResizeMode) -> Image.Image:
    """Stretch the whole image, or resize a centred crop of 87.5% of the shorter side."""
    if resize == "stretch":
        return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)
    return image.resize(size, Image.Resampling.BILINEAR, box=crop_box(image.size, size))


def crop_box(source: tuple[int, int], target: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred region with the target's aspect, 87.5% of the largest such region."""
    width, height = source
    scale = CROP_FRACTION * min(width / target[0], height / target[1])
    crop_w, crop_h = target[0] * scale, target[1] * scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return left, top, left + crop_w, top + crop_h


def to_tensor(
    pixels: npt.NDArray[np.uint8], layout: InputLayout, input_values: InputValues
) -> npt.NDArray[Any]:
    """uint8 pixels [H, W] or [H, W, C] to the input tensor: the numpy entry point."""
    table = value_table(layout.tensor, input_values)
    tensor: npt.NDArray[Any] = np.ascontiguousarray(table[pixels].reshape(layout.tensor.shape))
    return tensor


@functools.cache
def value_table(tensor: TensorInfo, input_values: InputValues) -> npt.NDArray[Any]:
    """What each pixel value 0..255 becomes in the tensor: a 256-entry lookup table."""
    levels = np.arange(256, dtype=np.float64)
    if input_values == "pixels":
        if tensor.dtype not in (np.uint8, np.float32):
            raise ValueError(f"'pixels' input needs a uint8 or float32 tensor, not {tensor.dtype}")
        return levels.astype(tensor.dtype)
    unit = levels / 255.0
    if not tensor.quantized:
        return unit.astype(tensor.dtype)
    info = np.iinfo(tensor.dtype)
    quantized = np.rint(unit / tensor.scale) + tensor.zero_point
    table: npt.NDArray[Any] = np.clip(quantized, info.min, info.max).astype(tensor.dtype)
    return table
