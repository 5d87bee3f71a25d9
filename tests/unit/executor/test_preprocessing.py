"""Image bytes to input tensors: formats, modes, orientation, resizing, values, limits."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from executor_service.errors import ErrorCode, ImageUnreadable
from executor_service.preprocessing import crop_box, decode, draft_size, prepare, value_table
from tests.malformed_images import png_of_zeros
from tests.unit.executor.images import (
    encode,
    fake_model,
    halves,
    layout,
    png_header_only,
    with_orientation,
)

LIMIT = 10_000_000
COLOR = (200, 100, 50)
# Pillow's L = R*299/1000 + G*587/1000 + B*114/1000 (ITU-R 601-2), rounded.
GRAY_OF_COLOR = round(200 * 0.299 + 100 * 0.587 + 50 * 0.114)

# (input_values, dtype, scale, zero_point): every kind of input tensor the manifest models use.
INPUTS = [
    ("pixels", np.uint8, 0.0078125, 128),  # MobileNet / SSD: uint8 fed as is
    ("unit", np.float32, 0.0, 0),  # TFLM float LSTM: x/255
    ("unit", np.int8, 1 / 255, -128),  # TFLM int8 LSTM: pixel - 128
    ("unit", np.uint8, 1 / 255, 0),  # Coral LSTM: the pixel itself
]


def expected_values(pixel: int, input_values: str, dtype, scale: float, zero_point: int):
    if input_values == "pixels":
        return np.array(pixel, dtype=dtype)
    if scale == 0.0:
        return np.array(pixel / 255, dtype=dtype)
    info = np.iinfo(dtype)
    return np.array(np.clip(round(pixel / 255 / scale) + zero_point, info.min, info.max), dtype)


@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
@pytest.mark.parametrize("color", ["RGB", "L"])
@pytest.mark.parametrize(("input_values", "dtype", "scale", "zero_point"), INPUTS)
def test_every_color_resize_and_value_combination(
    *, color, resize, input_values, dtype, scale, zero_point
) -> None:
    # [1, H, W] for grayscale (the MNIST models have no channel axis), [1, H, W, 3] for RGB;
    # H != W so a swapped width and height would show.
    shape = (1, 28, 20) if color == "L" else (1, 30, 40, 3)
    model = fake_model(layout(shape, dtype, scale, zero_point), color, resize, input_values)
    data = encode(Image.new("RGB", (97, 61), COLOR), "PNG")

    prepared = prepare(data, model, max_pixels=LIMIT)

    assert prepared.tensor.shape == shape
    assert prepared.tensor.dtype == dtype
    assert (prepared.width, prepared.height) == (97, 61)
    pixels = [GRAY_OF_COLOR] if color == "L" else list(COLOR)
    want = [expected_values(p, input_values, dtype, scale, zero_point) for p in pixels]
    got = prepared.tensor.reshape(-1, len(pixels))
    for channel, value in enumerate(want):
        np.testing.assert_array_equal(got[:, channel], np.full(got.shape[0], value))


def test_width_and_height_are_not_swapped() -> None:
    model = fake_model(layout((1, 30, 40, 3), np.uint8), "RGB", "stretch", "pixels")
    data = encode(halves((80, 60), (255, 0, 0), (0, 0, 255)), "PNG")

    tensor = prepare(data, model, max_pixels=LIMIT).tensor[0]

    assert tensor.shape == (30, 40, 3)
    assert (tensor[:, :18, 0] > 200).all() and (tensor[:, :18, 2] < 50).all()
    assert (tensor[:, 22:, 2] > 200).all() and (tensor[:, 22:, 0] < 50).all()


def test_center_crop_keeps_the_middle_seven_eighths_of_the_shorter_side() -> None:
    assert crop_box((400, 300), (224, 224)) == pytest.approx((68.75, 18.75, 331.25, 281.25))
    assert crop_box((300, 400), (224, 224)) == pytest.approx((18.75, 68.75, 281.25, 331.25))
    # A 5% frame is inside the cropped-away 6.25% margin: it vanishes with the crop only.
    image = Image.new("RGB", (200, 200), (0, 255, 0))
    image.paste(Image.new("RGB", (180, 180), (255, 255, 255)), (10, 10))
    data = encode(image, "PNG")
    shape = (1, 50, 50, 3)
    cropped = prepare(
        data, fake_model(layout(shape, np.uint8), "RGB", "center_crop", "pixels"), max_pixels=LIMIT
    ).tensor
    stretched = prepare(
        data, fake_model(layout(shape, np.uint8), "RGB", "stretch", "pixels"), max_pixels=LIMIT
    ).tensor
    assert (cropped == 255).all()
    assert (stretched[0, 0, :, 0] < 128).all()  # the green frame is still there


def test_draft_sizes_leave_enough_pixels_for_the_crop() -> None:
    assert draft_size((300, 300), "stretch") == (300, 300)
    assert draft_size((224, 224), "center_crop") == (256, 256)


@pytest.mark.parametrize(
    ("orientation", "top_left_is_red"),
    [(1, True), (3, False), (6, True), (8, False)],
)
def test_exif_orientation_is_applied(orientation: int, top_left_is_red: bool) -> None:
    # Stored 80x40, red left half; 6 turns it clockwise (red on top), 8 anticlockwise.
    data = with_orientation(halves((80, 40), (255, 0, 0), (0, 0, 255)), orientation)

    image, size = decode(data, color="RGB", draft_size=None, max_pixels=LIMIT)

    upright = (40, 80) if orientation in (6, 8) else (80, 40)
    assert image.size == size == upright
    red, _, blue = image.getpixel((2, 2))
    assert (red > 200 and blue < 60) is top_left_is_red


def test_draft_asks_the_decoder_for_rotated_dimensions() -> None:
    # Upright 800x1600 (stored 1600x800, orientation 6); the target is wide and short.
    data = with_orientation(Image.new("RGB", (1600, 800), COLOR), 6)

    image, size = decode(data, color="RGB", draft_size=(400, 100), max_pixels=LIMIT)

    assert size == (800, 1600)
    assert image.size[0] >= 400 and image.size[1] >= 100
    assert image.size[0] < 800  # and the decoder did scale down


def test_jpeg_draft_is_close_to_a_full_decode() -> None:
    gradient = np.add.outer(np.arange(1200) // 5, np.arange(1600) // 7).astype(np.uint8)
    data = encode(Image.fromarray(gradient).convert("RGB"), "JPEG", quality=90)
    model = fake_model(layout((1, 224, 224, 3), np.uint8), "RGB", "center_crop", "pixels")

    drafted, _ = decode(data, color="RGB", draft_size=(256, 256), max_pixels=LIMIT)
    fast = prepare(data, model, max_pixels=LIMIT, jpeg_draft=True).tensor.astype(float)
    full = prepare(data, model, max_pixels=LIMIT, jpeg_draft=False).tensor.astype(float)

    assert drafted.size == (400, 300)  # 1/4 scale: the smallest that still covers 256x256
    assert np.abs(fast - full).mean() < 2.0


def test_grayscale_image_for_an_rgb_model_has_three_equal_channels() -> None:
    data = encode(Image.new("L", (32, 32), 77), "JPEG", quality=100)
    image, _ = decode(data, color="RGB", draft_size=None, max_pixels=LIMIT)
    pixels = np.asarray(image)
    assert pixels.shape == (32, 32, 3)
    assert (np.abs(pixels.astype(int) - 77) <= 1).all()


def test_rgba_drops_alpha() -> None:
    data = encode(Image.new("RGBA", (8, 8), (10, 20, 30, 0)), "PNG")
    image, _ = decode(data, color="RGB", draft_size=None, max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (10, 20, 30)


def test_palette_transparency_converts_without_warnings() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    # Per-entry alpha (tRNS as bytes): Pillow warns when such an image goes straight to RGB.
    data = encode(image, "PNG", transparency=b"\x00\x80")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded, _ = decode(data, color="RGB", draft_size=None, max_pixels=LIMIT)
    assert decoded.getpixel((0, 0)) == (250, 10, 10)


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=100)
    image, _ = decode(data, color="RGB", draft_size=None, max_pixels=LIMIT)
    red, green, blue = image.getpixel((8, 8))
    assert red > 240 and green < 15 and blue < 15


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    # Pillow's own I;16 -> L conversion would give 255 here.
    data = encode(Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image, _ = decode(data, color="L", draft_size=None, max_pixels=LIMIT)
    assert image.mode == "L"
    assert np.asarray(image).tolist() == [[128] * 8] * 8


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image, _ = decode(data, color="RGB", draft_size=None, max_pixels=LIMIT)
    assert image.getpixel((8, 8)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("JPEG", "RGB"),
        ("PNG", "RGB"),
        ("BMP", "RGB"),
        ("GIF", "P"),
        ("WEBP", "RGB"),
        ("TIFF", "RGB"),
        ("PNG", "1"),
        ("TIFF", "L"),
    ],
)
def test_supported_formats_decode(fmt: str, mode: str) -> None:
    source = Image.new("RGB", (24, 16), COLOR).convert(mode)
    lossless = {"lossless": True} if fmt == "WEBP" else {}
    image, size = decode(
        encode(source, fmt, **lossless), color="RGB", draft_size=None, max_pixels=LIMIT
    )
    assert size == image.size == (24, 16)
    assert image.mode == "RGB"


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA"])
def test_formats_outside_the_allowed_list_are_refused(fmt: str) -> None:
    data = encode(Image.new("RGB", (16, 16), COLOR), fmt)
    with pytest.raises(ImageUnreadable):
        decode(data, color="RGB", draft_size=None, max_pixels=LIMIT)


def test_zero_bytes_fail_cleanly() -> None:
    with pytest.raises(ImageUnreadable, match="empty") as caught:
        decode(b"", color="RGB", draft_size=None, max_pixels=LIMIT)
    assert caught.value.code is ErrorCode.IMAGE_UNREADABLE
    assert caught.value.retryable is False


def test_garbage_fails_cleanly() -> None:
    with pytest.raises(ImageUnreadable, match="cannot decode"):
        decode(b"not an image at all" * 10, color="RGB", draft_size=None, max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_fails_cleanly(fmt: str) -> None:
    noise = np.random.default_rng(7).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    with pytest.raises(ImageUnreadable):
        decode(data[: len(data) // 2], color="RGB", draft_size=None, max_pixels=LIMIT)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = png_header_only(100_000, 100_000)  # 10^10 pixels declared in 100 bytes
    assert len(data) < 200
    with pytest.raises(ImageUnreadable, match=r"too large|exceeds"):
        decode(data, color="L", draft_size=None, max_pixels=LIMIT)


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (200, 100), COLOR), "PNG")
    decode(data, color="RGB", draft_size=None, max_pixels=20_000)
    with pytest.raises(ImageUnreadable, match="20000 pixels exceeds the limit of 19999"):
        decode(data, color="RGB", draft_size=None, max_pixels=19_999)


def test_value_tables_match_the_model_cards() -> None:
    levels = np.arange(256)
    int8 = layout((1, 28, 28), np.int8, 1 / 255, -128).tensor
    coral = layout((1, 28, 28), np.uint8, 0.003921568859368563, 0).tensor
    floats = layout((1, 28, 28), np.float32).tensor
    # tflm int8: q = pixel - 128; coral uint8: the raw pixel; tflm float: x/255.
    np.testing.assert_array_equal(value_table(int8, "unit"), levels - 128)
    np.testing.assert_array_equal(value_table(coral, "unit"), levels)
    np.testing.assert_allclose(value_table(floats, "unit"), levels / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="'pixels' input"):
        value_table(int8, "pixels")


def test_a_real_decompression_bomb_is_refused_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 100 MP of real (compressed) pixel data in about 15 kB; reading a PNG's EXIF for the
    # orientation would decode all of it, so the pixel limit has to come first.
    data = png_of_zeros(10_000, 10_000)
    assert len(data) < 50_000

    def no_decoding(_image: object) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageUnreadable, match="exceeds the limit"):
            decode(data, color="L", draft_size=None, max_pixels=LIMIT)
